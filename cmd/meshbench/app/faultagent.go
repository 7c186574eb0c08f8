package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshbench/meshbench/runner/kind"
)

// agentPoll is how often the fault agent looks for requests.
const agentPoll = 50 * time.Millisecond

type faultAgentOptions struct {
	dir, comment, cleanPrefix string
}

// newFaultAgentCommand is what the kind platform runs in a pod whose
// traffic a trial's network fault touches (an ephemeral container with
// NET_ADMIN beside the pod's processes, started before the load): it
// takes the requests the platform writes to its directory, in name
// order: iptables-restore input (NAME.rules) to apply, comments
// (NAME.count) whose rules' packet counters it reads, or tc commands
// (NAME.tc); and it says how each went (NAME.done, with the counts, or
// NAME.err with iptables' or tc's words). As it starts it removes every
// rule whose comment begins with its clean prefix (an earlier agent of
// the run killed before its end left them) and a token bucket filter at
// eth0's root, and at its end every rule carrying its own comment (or
// the comment and ":" and more) and the root qdiscs it added, so that a
// fault left in force by a trial that failed leaves nothing in the pod
// for the next rows, and an agent that outlives its trial does not
// remove the next trial's rules.
func newFaultAgentCommand(s Streams) *cobra.Command {
	o := &faultAgentOptions{}
	cmd := &cobra.Command{
		Use:    "fault-agent --dir DIR --comment COMMENT [--clean-prefix PREFIX]",
		Short:  "Apply a run's network faults in this network namespace (a kind pod's fault agent)",
		Hidden: true,
		Args:   argsCheck(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.dir == "" || o.comment == "" || strings.ContainsAny(o.comment+o.cleanPrefix, " \t\"'") {
				return badInput(errors.New("want --dir and --comment (one word), and --clean-prefix one word if set"))
			}
			if o.cleanPrefix == "" {
				o.cleanPrefix = o.comment
			}
			return runFaultAgent(cmd.Context(), o, s)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", "", "the directory the platform writes its requests to")
	f.StringVar(&o.comment, "comment", "", "the comment every rule this agent applies carries")
	f.StringVar(&o.cleanPrefix, "clean-prefix", "", "remove, as it starts, every rule whose comment begins with this (default: the comment)")
	return cmd
}

func runFaultAgent(ctx context.Context, o *faultAgentOptions, s Streams) error {
	// An agent killed before its end (a crashed run) left its rules for
	// this one, the pod's next.
	if err := removeCommented(func(c string) bool { return strings.HasPrefix(c, o.cleanPrefix) }, s); err != nil {
		return err
	}
	if err := removeTBF(s); err != nil {
		return err
	}
	rooted := map[string]string{} // the root qdiscs it added: their handles by device
	t := time.NewTicker(agentPoll)
	defer t.Stop()
	for {
		var files []string
		for _, ext := range []string{kind.AgentRules, kind.AgentCount, kind.AgentTC} {
			matched, err := filepath.Glob(filepath.Join(o.dir, "*"+ext))
			if err != nil {
				return err
			}
			files = append(files, matched...)
		}
		slices.SortFunc(files, func(a, b string) int { return strings.Compare(filepath.Base(a), filepath.Base(b)) })
		for _, f := range files {
			answer(ctx, f, rooted, s)
		}
		select {
		case <-ctx.Done():
			var errs []error
			for _, dev := range slices.Sorted(maps.Keys(rooted)) {
				errs = append(errs, removeRoot(dev, rooted[dev], s))
			}
			errs = append(errs, removeCommented(func(c string) bool { return c == o.comment || strings.HasPrefix(c, o.comment+":") }, s))
			return errors.Join(errs...)
		case <-t.C:
		}
	}
}

// answer takes one request and reports how it went beside it; rooted
// follows the root qdiscs its tc commands add and delete.
func answer(ctx context.Context, f string, rooted map[string]string, s Streams) {
	ext := filepath.Ext(f)
	base := strings.TrimSuffix(f, ext)
	data, err := os.ReadFile(f)
	var content []byte
	if err == nil {
		switch ext {
		case kind.AgentCount:
			content, err = countCommented(ctx, strings.Fields(string(data)))
		case kind.AgentTC:
			for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				if err = runTC(ctx, strings.Fields(line), rooted); err != nil {
					break
				}
				fmt.Fprintf(s.Out, "tc %s\n", line)
			}
		default:
			if err = iptablesRestore(ctx, data); err == nil {
				fmt.Fprintf(s.Out, "%s", data)
			}
		}
	}
	result := base + ".done"
	if err != nil {
		result, content = base+".err", []byte(err.Error())
		fmt.Fprintf(s.ErrOut, "fault-agent: %s: %v\n", filepath.Base(f), err)
	}
	if werr := writeFileAtomic(result, func(w io.Writer) error { _, err := w.Write(content); return err }); werr != nil {
		fmt.Fprintf(s.ErrOut, "fault-agent: %v\n", werr)
	}
	_ = os.Remove(f)
}

// countCommented sums the packet counters of the filter table's rules
// carrying each comment, as lines "COMMENT PACKETS".
func countCommented(ctx context.Context, comments []string) ([]byte, error) {
	var stderr bytes.Buffer
	c := exec.CommandContext(ctx, "iptables-save", "-c", "-t", "filter")
	c.Stderr = &stderr
	saved, err := c.Output()
	if err != nil {
		return nil, fmt.Errorf("iptables-save: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	n := make([]uint64, len(comments))
	for _, line := range strings.Split(string(saved), "\n") {
		// [PACKETS:BYTES] -A CHAIN ...
		counters, rest, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(counters, "[") || !strings.HasPrefix(rest, "-A ") {
			continue
		}
		for i, c := range comments {
			if !hasComment(rest, func(got string) bool { return got == c }) {
				continue
			}
			packets, _, _ := strings.Cut(strings.Trim(counters, "[]"), ":")
			v, err := strconv.ParseUint(packets, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("iptables-save: counters %q", counters)
			}
			n[i] += v
		}
	}
	var b bytes.Buffer
	for i, c := range comments {
		fmt.Fprintf(&b, "%s %d\n", c, n[i])
	}
	return b.Bytes(), nil
}

// runTC runs tc with args; rooted, when set, follows the root qdiscs it
// adds ("qdisc add dev DEV root [handle H] ...") and deletes, with their
// handles ("" when none was given).
func runTC(ctx context.Context, args []string, rooted map[string]string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "tc", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("tc %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	after := func(word string) string {
		if i := slices.Index(args, word); i >= 0 && i+1 < len(args) {
			return args[i+1]
		}
		return ""
	}
	dev := after("dev")
	if rooted == nil || len(args) < 2 || args[0] != "qdisc" || dev == "" || !slices.Contains(args, "root") {
		return nil
	}
	switch args[1] {
	case "add", "replace":
		rooted[dev] = after("handle")
	case "del", "delete":
		delete(rooted, dev)
	}
	return nil
}

// rootQdisc is the type and handle of a device's root qdisc ("" when tc
// cannot show it).
func rootQdisc(dev string) (typ, handle string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "tc", "qdisc", "show", "dev", dev, "root").Output()
	// qdisc tbf 1a: root refcnt 2 rate ...
	if f := strings.Fields(string(out)); err == nil && len(f) >= 3 && f[0] == "qdisc" {
		return f[1], f[2]
	}
	return "", ""
}

// removeRoot removes the root qdisc the agent added to dev, unless
// another one took its place (an agent of a later trial's, after this
// one's fault was removed).
func removeRoot(dev, handle string, s Streams) error {
	if _, h := rootQdisc(dev); handle != "" && h != handle {
		fmt.Fprintf(s.Out, "the root qdisc of %s is %q now, not this agent's %s: left\n", dev, h, handle)
		return nil
	}
	fmt.Fprintf(s.Out, "removing its bandwidth limit of %s\n", dev)
	return runTC(context.Background(), []string{"qdisc", "del", "dev", dev, "root"}, nil)
}

// removeTBF removes a token bucket filter at eth0's root, which only a
// bandwidth fault puts there (an earlier agent of the run killed before
// its end left it). A pod without eth0 or tc has none.
func removeTBF(s Streams) error {
	if typ, h := rootQdisc("eth0"); typ == "tbf" {
		fmt.Fprintf(s.Out, "removing a bandwidth limit left in force (handle %s)\n", h)
		return runTC(context.Background(), []string{"qdisc", "del", "dev", "eth0", "root"}, nil)
	}
	return nil
}

// iptablesRestore applies rules (iptables-restore's input) on top of the
// tables' rules.
func iptablesRestore(ctx context.Context, rules []byte) error {
	c := exec.CommandContext(ctx, "iptables-restore", "--noflush")
	c.Stdin = bytes.NewReader(rules)
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// removeCommented deletes every rule of the filter table whose comment
// matches.
func removeCommented(match func(comment string) bool, s Streams) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	saved, err := exec.CommandContext(ctx, "iptables-save", "-t", "filter").Output()
	if err != nil {
		return fmt.Errorf("iptables-save: %w", err)
	}
	var del strings.Builder
	n := 0
	for _, line := range strings.Split(string(saved), "\n") {
		rest, ok := strings.CutPrefix(line, "-A ")
		if !ok || !hasComment(line, match) {
			continue
		}
		fmt.Fprintf(&del, "-D %s\n", rest)
		n++
	}
	if n == 0 {
		return nil
	}
	fmt.Fprintf(s.Out, "removing %d rules left in force:\n%s", n, del.String())
	return iptablesRestore(ctx, []byte("*filter\n"+del.String()+"COMMIT\n"))
}

// hasComment says whether an iptables-save line carries a comment that
// matches.
func hasComment(line string, match func(string) bool) bool {
	f := strings.Fields(line)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "--comment" && match(strings.Trim(f[i+1], `"`)) {
			return true
		}
	}
	return false
}
