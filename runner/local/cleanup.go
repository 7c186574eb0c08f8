package local

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshbench/meshbench/runner"
)

var (
	nsRE      = regexp.MustCompile(`^mb-([0-9a-f]{6})-`)
	linkRE    = regexp.MustCompile(`^mb-?([0-9a-f]{6})(?:[hn]\d+)?(?:@|$)`)
	commentRE = regexp.MustCompile(`meshbench:([0-9a-f]{6})`)
)

// Cleanup removes everything that runs whose owner process is dead left
// behind: processes (found by their MESHBENCH_RUN_ID), iptables rules,
// namespaces, links and state files. Resources of live runs are untouched.
func Cleanup(ctx context.Context, stateDir string, log runner.Logger) error {
	ex := execRunner{}
	// Scan resources before reading the state files: a run writes its state
	// file before it creates anything, so a resource seen here belongs to a
	// run whose file the read below sees, and a run starting concurrently
	// is never mistaken for a dead one.
	orphans := orphanIDs(ctx, ex)
	live := map[string]bool{}
	dead := map[string]record{}
	for _, r := range readRecords(stateDir) {
		if ownerAlive(r) {
			live[r.RunID] = true
		} else {
			dead[r.RunID] = r
		}
	}
	for _, id := range orphans {
		if _, ok := dead[id]; !live[id] && !ok {
			dead[id] = record{RunID: id}
		}
	}
	var errs []error
	for id, r := range dead {
		log.Logf("removing leftovers of dead run %s", id)
		errs = append(errs, removeRun(ctx, ex, r))
		if err := os.Remove(statePath(stateDir, id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// orphanIDs lists run ids that appear in process environments, namespace
// names, link names and iptables comments.
func orphanIDs(ctx context.Context, ex executor) []string {
	ids := map[string]bool{}
	for id := range processesByRun() {
		ids[id] = true
	}
	for _, id := range cgroupRunIDs() {
		ids[id] = true
	}
	if _, err := exec.LookPath("ip"); err == nil && os.Geteuid() == 0 {
		if out, err := ex.Run(ctx, "ip", "netns", "list"); err == nil {
			for _, line := range strings.Split(out, "\n") {
				if m := nsRE.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
					ids[m[1]] = true
				}
			}
		}
		if out, err := ex.Run(ctx, "ip", "-o", "link", "show"); err == nil {
			for _, line := range strings.Split(out, "\n") {
				f := strings.Fields(line)
				if len(f) > 1 {
					if m := linkRE.FindStringSubmatch(strings.TrimSuffix(f[1], ":")); m != nil {
						ids[m[1]] = true
					}
				}
			}
		}
		for _, rule := range iptablesRules(ctx, ex) {
			if m := commentRE.FindStringSubmatch(rule); m != nil {
				ids[m[1]] = true
			}
		}
	}
	out := make([]string, 0, len(ids))
	for id := range ids {
		out = append(out, id)
	}
	return out
}

// removeRun deletes one run's resources: processes first (they hold the
// namespaces open), then rules, namespaces and links. Resources already gone
// are not errors.
func removeRun(ctx context.Context, ex executor, r record) error {
	killRun(r.RunID)
	var errs []error
	if err := removeCgroups(r.RunID); err != nil {
		errs = append(errs, err)
	}
	if os.Geteuid() != 0 {
		return nil
	}
	if _, err := exec.LookPath("iptables"); err == nil {
		comment := ruleComment(r.RunID)
		for _, rule := range iptablesRules(ctx, ex) {
			if !strings.Contains(rule, comment) {
				continue
			}
			args := strings.Fields(strings.ReplaceAll(rule, `"`, ""))
			if len(args) < 2 || args[0] != "-A" {
				continue
			}
			args[0] = "-D"
			if _, err := ex.Run(ctx, "iptables", append([]string{"-w", "5"}, args...)...); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.Join(errs...)
	}
	nsList, _ := ex.Run(ctx, "ip", "netns", "list")
	for _, line := range strings.Split(nsList, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], "mb-"+r.RunID+"-") {
			if _, err := ex.Run(ctx, "ip", "netns", "del", f[0]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	links, _ := ex.Run(ctx, "ip", "-o", "link", "show")
	for _, line := range strings.Split(links, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if m := linkRE.FindStringSubmatch(name); m != nil && m[1] == r.RunID {
			if _, err := ex.Run(ctx, "ip", "link", "del", name); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// iptablesRules lists the filter table's rules in iptables -S form.
func iptablesRules(ctx context.Context, ex executor) []string {
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil
	}
	out, err := ex.Run(ctx, "iptables", "-w", "5", "-S")
	if err != nil {
		return nil
	}
	return strings.Split(out, "\n")
}

// processesByRun maps run ids to the PIDs of processes that carry them in
// their environment.
func processesByRun() map[string][]int {
	out := map[string][]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	self := os.Getpid()
	prefix := []byte(EnvRunID + "=")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile(filepath.Join(d, "environ"))
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(string(env), "\x00") {
			if strings.HasPrefix(kv, string(prefix)) {
				id := kv[len(prefix):]
				if validRunID(id) {
					out[id] = append(out[id], pid)
				}
			}
		}
	}
	return out
}

// killRun kills every process of a run and waits (briefly) for them to go.
func killRun(id string) {
	pids := processesByRun()[id]
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(2 * time.Second)
	for _, pid := range pids {
		for time.Now().Before(deadline) && syscall.Kill(pid, 0) == nil && !zombie(pid) {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func zombie(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}
