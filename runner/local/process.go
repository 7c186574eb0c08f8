package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/runner"
)

// Environment variables every child carries, so that leftovers can be found
// by run id after a crash.
const (
	EnvRunID     = "MESHBENCH_RUN_ID"
	EnvComponent = "MESHBENCH_COMPONENT"
)

// process is a process of a unit, as a container is: a fault may kill it
// and have it started again (restart), as a kubelet restarts a container;
// it is done only when it ends for good.
type process struct {
	name  string
	class string
	node  string
	cpus  string // its taskset list, "" when not pinned
	// httpFaults is its own HTTPChaos rule API (ProcessSpec.HTTPFaults).
	httpFaults string
	// restarted, when set, runs (in a goroutine of its own) once each
	// incarnation after the first has started.
	restarted func()
	cgroups   map[string]string
	argv      []string // to start it again
	env       []string
	stdout    io.Writer
	stderr    io.Writer

	mu       sync.Mutex
	cmd      *exec.Cmd     // the current incarnation
	exited   chan struct{} // closed when the current incarnation exits
	restarts int
	// paused counts the pod failures in force (SIGSTOP); generation
	// counts the pod's replacements (pod-kill), which end them.
	paused, generation int
	// restarting: the current incarnation is killed to be started again;
	// stopping: Stop was called, nothing starts again.
	restarting, stopping bool
	stopped              chan struct{} // closed by Stop
	done                 chan struct{}
	err                  error
}

var _ runner.Process = (*process)(nil)

// start runs a process on its node: inside the node's namespace through
// `ip netns exec` (which execs in place, so the PID is the process's own),
// pinned with taskset when asked. Children die with the platform's process
// (PDEATHSIG) and sit in their own process group so that a terminal's
// Ctrl-C reaches only meshbench, which then stops them in order.
func (p *platform) start(node string, spec runner.ProcessSpec) (*process, error) {
	return p.startIn(node, spec, nil)
}

// startIn starts a process in cgroups of its own, or, given another
// process (a stressor's target), in that one's (none if it has none).
func (p *platform) startIn(node string, spec runner.ProcessSpec, join *process) (*process, error) {
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
	if command == meshes.ProxyCommand {
		command = p.opts.Proxy
	}
	if command == "" {
		command = p.opts.Self
	}
	argv = append(argv, command)
	argv = append(argv, spec.Args...)
	var cgroups map[string]string
	if join != nil {
		cgroups = join.cgroups
	} else if p.cgroups {
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
	pr := &process{name: spec.Name, class: spec.Class, node: node, cpus: spec.CPUs, httpFaults: spec.HTTPFaults, cgroups: cgroups,
		argv: argv, env: append(os.Environ(), EnvRunID+"="+p.opts.RunID, EnvComponent+"="+spec.Name),
		stdout: spec.Stdout, stderr: spec.Stderr, done: make(chan struct{}), stopped: make(chan struct{})}
	if spec.HTTPFaults != "" {
		// The HTTPChaos rules in force are put back in each new
		// incarnation, as Chaos Mesh keeps them on a restarted container.
		pr.restarted = func() { p.restoreHTTPFaults(node) }
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if err := pr.run(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p.procs = append(p.procs, pr)
	return pr, nil
}

// run starts an incarnation and follows it: when it exits, the process
// is done, unless it is being restarted. The caller holds pr.mu.
func (pr *process) run() error {
	cmd := exec.Command(pr.argv[0], pr.argv[1:]...)
	cmd.Env = pr.env
	cmd.Stdout, cmd.Stderr = pr.stdout, pr.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	pr.cmd, pr.exited = cmd, exited
	if pr.paused > 0 {
		// A container restarted while its pod is failed stays failed.
		_ = signalGroup(cmd.Process.Pid, syscall.SIGSTOP)
	}
	go func() {
		err := cmd.Wait()
		pr.mu.Lock()
		defer pr.mu.Unlock()
		close(exited)
		if !pr.restarting || pr.stopping {
			pr.finish(err)
		}
	}()
	return nil
}

// finish ends the process for good with err (once); the caller holds
// pr.mu.
func (pr *process) finish(err error) {
	select {
	case <-pr.done:
	default:
		pr.err = err
		close(pr.done)
	}
}

// backoff is how long a kubelet waits before it starts a killed
// container again: at once the first time, then 10 s doubling up to 5
// minutes (kubelet's container restart back-off).
func (pr *process) backoff() time.Duration {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return runner.RestartBackoff(pr.restarts)
}

// pid is the current incarnation's process (and group) id.
func (pr *process) pid() int {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.cmd.Process.Pid
}

// kill ends the current incarnation (its process group: SIGTERM, then
// SIGKILL after grace; at once when grace is 0) and starts it again after
// delay, unless the process is stopped meanwhile: a container's restart,
// or, with replace, its pod's replacement (a new pod: no restart count,
// no failure in force). With no grace it returns once the incarnation is
// gone; a grace runs in the background. A process that has ended, is
// stopping or is already being restarted is left alone.
func (pr *process) kill(grace, delay time.Duration, replace bool) {
	pr.mu.Lock()
	select {
	case <-pr.done:
		pr.mu.Unlock()
		return
	default:
	}
	if pr.stopping || pr.restarting {
		pr.mu.Unlock()
		return
	}
	pr.restarting = true
	pid, exited := pr.cmd.Process.Pid, pr.exited
	pr.mu.Unlock()
	end := func() {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
		// The leader is reaped; its group may take a moment more (a
		// restart at once must not meet its sockets).
		for i := 0; i < 100 && syscall.Kill(-pid, 0) == nil; i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	restart := func() {
		select {
		case <-time.After(delay):
		case <-pr.stopped:
		}
		pr.mu.Lock()
		defer pr.mu.Unlock()
		pr.restarting = false
		if pr.stopping {
			pr.finish(errors.New("signal: killed (and stopped before its restart)"))
			return
		}
		if replace {
			pr.restarts, pr.paused = 0, 0
			pr.generation++
		} else {
			pr.restarts++
		}
		if err := pr.run(); err != nil {
			pr.finish(fmt.Errorf("restart: %w", err))
			return
		}
		if pr.restarted != nil {
			go pr.restarted()
		}
	}
	if grace > 0 {
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		go func() {
			select {
			case <-exited:
			case <-time.After(grace):
			case <-pr.stopped:
			}
			end()
			restart()
		}()
		return
	}
	end()
	go restart()
}

// pause stops the process (its current group, and every incarnation
// started while it is paused) until the returned resume; pauses nest.
// A resume after the pod was replaced does nothing: the failure was the
// old pod's.
func (pr *process) pause() (resume func() error, err error) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	gen := pr.generation
	pr.paused++
	if pr.paused == 1 && !pr.restarting {
		err = signalGroup(pr.cmd.Process.Pid, syscall.SIGSTOP)
	}
	return func() error {
		pr.mu.Lock()
		defer pr.mu.Unlock()
		if gen != pr.generation || pr.paused == 0 {
			return nil
		}
		pr.paused--
		if pr.paused == 0 && !pr.restarting {
			return signalGroup(pr.cmd.Process.Pid, syscall.SIGCONT)
		}
		return nil
	}, err
}

func (pr *process) Name() string { return pr.name }

func (pr *process) Done() <-chan struct{} { return pr.done }

func (pr *process) Err() error {
	<-pr.done
	return pr.err
}

func (pr *process) Stop(ctx context.Context) error {
	pr.mu.Lock()
	select {
	case <-pr.done:
		pr.mu.Unlock()
		return nil
	default:
	}
	if !pr.stopping {
		pr.stopping = true
		close(pr.stopped) // a restart waiting for its delay gives up
	}
	cmd := pr.cmd
	pr.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-pr.done:
		return nil
	case <-ctx.Done():
	}
	// Kill the whole group: a process may have children of its own.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-pr.done
	return nil
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
