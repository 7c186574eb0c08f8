package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// agentPoll is how often the fault agent looks for rule files.
const agentPoll = 50 * time.Millisecond

type faultAgentOptions struct {
	dir, comment, cleanPrefix string
}

// newFaultAgentCommand is what the kind platform runs in a pod whose
// traffic a trial's network fault touches (an ephemeral container with
// NET_ADMIN beside the pod's processes, started before the load): it
// applies the iptables-restore files the platform writes to its
// directory (NAME.rules), in name order, and says how each went
// (NAME.done, or NAME.err with iptables' words). As it starts it removes
// every rule whose comment begins with its clean prefix (an earlier agent
// of the run killed before its end left them), and at its end every rule
// carrying its own comment, so that a fault left in force by a trial that
// failed leaves nothing in the pod for the next rows, and an agent that
// outlives its trial does not remove the next trial's rules.
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
	f.StringVar(&o.dir, "dir", "", "the directory the platform writes rule files to")
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
	t := time.NewTicker(agentPoll)
	defer t.Stop()
	for {
		files, err := filepath.Glob(filepath.Join(o.dir, "*.rules"))
		if err != nil {
			return err
		}
		for _, f := range files { // in name order
			applyRuleFile(ctx, f, s)
		}
		select {
		case <-ctx.Done():
			return removeCommented(func(c string) bool { return c == o.comment }, s)
		case <-t.C:
		}
	}
}

// applyRuleFile applies one rule file and reports how it went beside it.
func applyRuleFile(ctx context.Context, f string, s Streams) {
	base := strings.TrimSuffix(f, ".rules")
	data, err := os.ReadFile(f)
	if err == nil {
		err = iptablesRestore(ctx, data)
	}
	result, content := base+".done", []byte(nil)
	if err != nil {
		result, content = base+".err", []byte(err.Error())
		fmt.Fprintf(s.ErrOut, "fault-agent: %s: %v\n", filepath.Base(f), err)
	} else {
		fmt.Fprintf(s.Out, "%s", data)
	}
	if werr := writeFileAtomic(result, func(w io.Writer) error { _, err := w.Write(content); return err }); werr != nil {
		fmt.Fprintf(s.ErrOut, "fault-agent: %v\n", werr)
	}
	_ = os.Remove(f)
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
