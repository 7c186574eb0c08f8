package local

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/meshbench/meshbench/runner"
)

// Environment variables every child carries, so that leftovers can be found
// by run id after a crash.
const (
	EnvRunID     = "MESHBENCH_RUN_ID"
	EnvComponent = "MESHBENCH_COMPONENT"
)

type process struct {
	name    string
	class   string
	node    string
	cpus    string // its taskset list, "" when not pinned
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	cgroups map[string]string
}

var _ runner.Process = (*process)(nil)

// start runs a process on its node: inside the node's namespace through
// `ip netns exec` (which execs in place, so the PID is the process's own),
// pinned with taskset when asked. Children die with the platform's process
// (PDEATHSIG) and sit in their own process group so that a terminal's
// Ctrl-C reaches only meshbench, which then stops them in order.
func (p *platform) start(node string, spec runner.ProcessSpec) (*process, error) {
	return p.startIn(node, spec, nil, false)
}

// startIn starts a process in groups of its own, or, with joining, in the
// cgroups of another (join, none when nil): a stressor charged to its
// target.
func (p *platform) startIn(node string, spec runner.ProcessSpec, join map[string]string, joining bool) (*process, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return nil, fmt.Errorf("platform is down")
	}
	argv := []string{}
	if spec.CPUs != "" {
		if path, err := exec.LookPath("taskset"); err == nil {
			argv = append(argv, path, "-c", spec.CPUs)
		}
	}
	if p.mode == NetNS {
		argv = append(argv, "ip", "netns", "exec", nsName(p.opts.RunID, node))
	}
	command := spec.Command
	if command == "" {
		command = p.opts.Self
	}
	argv = append(argv, command)
	argv = append(argv, spec.Args...)
	cgroups := join
	if p.cgroups && !joining {
		// The process joins its groups itself, before it execs anything
		// (a shell writes its own pid, then execs): every child it will
		// ever have, and every page it charges, is then accounted. Moving
		// it from outside after the start would race with its first fork.
		p.seq++
		var err error
		if cgroups, err = makeCgroups(p.opts.RunID, fmt.Sprintf("%s-%d", spec.Name, p.seq)); err != nil {
			p.opts.Log.Logf("cgroup accounting for %s: %v (falling back to /proc)", spec.Name, err)
		}
	}
	if len(cgroups) > 0 {
		script := ""
		for _, dir := range cgroups {
			script += "echo $$ > " + shellQuote(filepath.Join(dir, "cgroup.procs")) + " && "
		}
		argv = append([]string{"/bin/sh", "-c", script + `exec "$@"`, "meshbench-cgroup"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), EnvRunID+"="+p.opts.RunID, EnvComponent+"="+spec.Name)
	cmd.Stdout, cmd.Stderr = spec.Stdout, spec.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	pr := &process{name: spec.Name, class: spec.Class, node: node, cpus: spec.CPUs, cmd: cmd, done: make(chan struct{}), cgroups: cgroups}
	go func() {
		pr.err = cmd.Wait()
		close(pr.done)
	}()
	p.procs = append(p.procs, pr)
	return pr, nil
}

func (pr *process) Name() string { return pr.name }

func (pr *process) Done() <-chan struct{} { return pr.done }

func (pr *process) Err() error {
	<-pr.done
	return pr.err
}

func (pr *process) Stop(ctx context.Context) error {
	select {
	case <-pr.done:
		return nil
	default:
	}
	_ = pr.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-pr.done:
		return nil
	case <-ctx.Done():
	}
	// Kill the whole group: a process may have children of its own.
	_ = syscall.Kill(-pr.cmd.Process.Pid, syscall.SIGKILL)
	<-pr.done
	return nil
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
