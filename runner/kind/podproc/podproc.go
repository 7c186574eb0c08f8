// Package podproc is the process wrapper every container of the kind
// platform runs (an ephemeral container cannot be stopped through the
// Kubernetes API): it runs one process of a unit, writes its output and
// its exit to control files in a directory the platform reads, and passes
// on the signals the platform asks for there. It depends on the standard
// library alone, so that its own binary (meshbench-pod-process) adds
// little to the memory the kubelet counts for each container.
package podproc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// The control files of a process in the control directory, by suffix of
// its container's name: the platform asks for signals with the first
// four; the wrapper writes the others.
const (
	CtlTerm  = ".term"  // send SIGTERM
	CtlKill  = ".kill"  // send SIGKILL (and do not start a process not yet started)
	CtlPause = ".pause" // while it exists, the process is stopped (SIGSTOP; SIGCONT once it is gone)
	// CtlRestart asks for the process to be killed and started again, as
	// a kubelet restarts a container: a Restart, which the wrapper removes
	// once it has taken it.
	CtlRestart = ".restart"
	CtlStdout  = ".stdout" // the process's stdout (also the container's log)
	CtlStderr  = ".stderr" // its stderr
	CtlExit    = ".exit"   // its exit, an ExitReport, written once the output is complete
	// CtlArgv is the command line (a JSON array) of a container of a
	// pod's template, whose wrapper waits for it (Await).
	CtlArgv = ".argv"
)

// ExitReport is how a process ended.
type ExitReport struct {
	Code int `json:"code"`
	// Signal names the signal that killed it ("killed", "terminated").
	Signal string `json:"signal,omitempty"`
	// Error is the wrapper's own failure (the command could not start).
	Error string `json:"error,omitempty"`
}

// Err is the report as an error, worded as os/exec words it locally.
func (r ExitReport) Err() error {
	switch {
	case r.Error != "":
		return errors.New(r.Error)
	case r.Signal != "":
		return fmt.Errorf("signal: %s", r.Signal)
	case r.Code != 0:
		return fmt.Errorf("exit status %d", r.Code)
	}
	return nil
}

// Restart is a request to kill the process and start it again.
type Restart struct {
	// Grace, when set, is the time between SIGTERM and SIGKILL (a pod's
	// grace period); without it the process is killed at once.
	Grace time.Duration `json:"grace,omitempty"`
	// Replace says its pod is replaced (pod-kill): the new process starts
	// Delay after the old one's end, with a restart count of 0, also when
	// a restart is under way (its wait becomes Delay from then).
	Replace bool          `json:"replace,omitempty"`
	Delay   time.Duration `json:"delay,omitempty"`
	// Backoff, without Replace, is the kubelet's restart back-off: the
	// container's restart n (from 0, since its pod started) waits
	// Backoff[min(n, len-1)] (none when empty). A request of this kind
	// while a restart is under way kills at once when it has no grace,
	// and is otherwise dropped, as the kubelet would: there is no new
	// process to kill.
	Backoff []time.Duration `json:"backoff,omitempty"`
}

// merge folds a request taken while r is under way into r: a kill
// without grace is at once, a replacement's delay becomes r's.
func (r *Restart) merge(n Restart) (killNow bool) {
	if n.Replace {
		r.Replace, r.Delay = true, n.Delay
	}
	return n.Grace <= 0
}

// WriteExit writes the report under base+CtlExit atomically.
func WriteExit(base string, r ExitReport) error { return writeJSON(base+CtlExit, r) }

// WriteArgv gives an awaiting wrapper (Await) its command line under
// base+CtlArgv, atomically.
func WriteArgv(base string, argv []string) error { return writeJSON(base+CtlArgv, argv) }

// AskRestart writes a restart request under base+CtlRestart atomically.
func AskRestart(base string, r Restart) error { return writeJSON(base+CtlRestart, r) }

// writeJSON writes v to path through a temporary file, so that a reader
// sees all of it or nothing.
func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// takeRestart claims a restart request, if there is one, by renaming it
// (a request written meanwhile is the next one), then reads it.
func takeRestart(base string) (Restart, bool) {
	var r Restart
	taken := base + CtlRestart + ".taken"
	if os.Rename(base+CtlRestart, taken) != nil {
		return r, false
	}
	data, err := os.ReadFile(taken)
	_ = os.Remove(taken)
	if err != nil || json.Unmarshal(data, &r) != nil {
		// Unreadable: a kill and an immediate start all the same.
		r = Restart{}
	}
	return r, true
}

// Hold keeps a pod's network namespace: it returns at SIGTERM or SIGINT.
func Hold(done <-chan struct{}) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case <-done:
	}
}

// Await is the wrapper of a container of a pod's template, which the
// kubelet starts before the platform knows its command line (the pod's
// address goes into its configuration): it waits for the command line
// under CtlArgv, then runs it as Run does. With idle, it then stays until
// SIGTERM, so that a container the kubelet would restart on its exit
// (a sidecar, restartPolicy Always) ends once, as an ephemeral container
// does; the platform reads its exit from the report. Asked to end before
// the command line came, it reports a SIGTERM without starting anything.
// Started again after its process started (its container restarted), it
// does not run it again, and reports it lost if it has no report.
func Await(control, name string, idle bool, out, errOut io.Writer) int {
	base := filepath.Join(control, name)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	// end ends the wrapper with code: at once after SIGTERM, else, with
	// idle, once it comes.
	end := func(code int) int {
		select {
		case <-sig:
			return code
		default:
		}
		if idle {
			<-sig
		}
		return code
	}
	if asked(base, CtlStdout) || asked(base, CtlExit) {
		// Started again (the kubelet restarting a sidecar container
		// whose wrapper died): its process ran, and was killed with the
		// wrapper (Pdeathsig) if it had not ended; it is not run twice.
		if !asked(base, CtlExit) {
			writeReport(base, ExitReport{Code: 127, Error: "the process's wrapper ended before the process's report (its container was restarted)"}, errOut)
		}
		return end(0)
	}
	var argv []string
	for argv == nil {
		if data, err := os.ReadFile(base + CtlArgv); err == nil {
			if err := json.Unmarshal(data, &argv); err != nil || len(argv) == 0 {
				return end(writeReport(base, ExitReport{Code: 2, Error: fmt.Sprintf("%s%s: want a JSON array of the command and its arguments (%v)", name, CtlArgv, err)}, errOut))
			}
			break
		}
		if asked(base, CtlKill) || asked(base, CtlTerm) {
			return end(writeReport(base, terminated, errOut))
		}
		select {
		case <-sig:
			return writeReport(base, terminated, errOut)
		case <-time.After(pollInterval):
		}
	}
	// Run takes the signals from here on; this wrapper's channel gets
	// them too, which end reads.
	return end(Run(control, name, argv, out, errOut))
}

// terminated is the report of a process ended by SIGTERM, or never
// started as asked.
var terminated = ExitReport{Code: 128 + int(syscall.SIGTERM), Signal: syscall.SIGTERM.String()}

// writeReport writes r under base and returns its code.
func writeReport(base string, r ExitReport, errOut io.Writer) int {
	if err := WriteExit(base, r); err != nil {
		fmt.Fprintf(errOut, "pod-process: %v\n", err)
	}
	return r.Code
}

// pollInterval is how often the wrapper looks at its control files.
const pollInterval = 100 * time.Millisecond

// Run runs args as the process name in the control directory and returns
// the exit status to pass on. Its stdout and stderr go to files in the
// control directory (and to out and errOut, the container's log), and its
// exit to a report there once they are complete: the platform reads
// those, not the kubelet. Asked to restart it, it kills the process and
// starts it again in the same container (its output appended), as the
// kubelet restarts a container: an ephemeral container is never
// restarted by the kubelet.
func Run(control, name string, args []string, out, errOut io.Writer) int {
	base := filepath.Join(control, name)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	report := func(r ExitReport) int { return writeReport(base, r, errOut) }
	ended := func() bool { return asked(base, CtlKill) || asked(base, CtlTerm) }
	// The platform may have given up on this process before it started.
	if ended() {
		return report(terminated)
	}
	stdout, err1 := os.Create(base + CtlStdout)
	stderr, err2 := os.Create(base + CtlStderr)
	if err := errors.Join(err1, err2); err != nil {
		return report(ExitReport{Code: 127, Error: err.Error()})
	}
	defer stdout.Close()
	defer stderr.Close()
	restarts := 0 // since its pod started, for the back-off
	for {
		c := exec.Command(args[0], args[1:]...)
		c.Stdout, c.Stderr = teeWriter{stdout, out}, teeWriter{stderr, errOut}
		// Its own process group, signalled as one (nginx's workers, a
		// shell's children), as the local platform does; and the report
		// is written even if something outlives it holding the output
		// open.
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		c.WaitDelay = 5 * time.Second
		if err := c.Start(); err != nil {
			return report(ExitReport{Code: 127, Error: err.Error()})
		}
		restart, err := supervise(c, base, sig, teeWriter{stderr, errOut})
		if restart == nil {
			if st := c.ProcessState; st != nil {
				// Its own status, also when something it left held the
				// output open past WaitDelay (exec.ErrWaitDelay).
				if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return report(ExitReport{Code: 128 + int(ws.Signal()), Signal: ws.Signal().String()})
				}
				return report(ExitReport{Code: st.ExitCode()})
			}
			return report(ExitReport{Code: 127, Error: err.Error()})
		}
		delay := restart.Delay
		if restart.Replace {
			restarts = 0
		} else {
			if len(restart.Backoff) > 0 {
				delay = restart.Backoff[min(restarts, len(restart.Backoff)-1)]
			}
			restarts++
		}
		logw := teeWriter{stderr, errOut}
		fmt.Fprintf(logw, "pod-process: killed to be restarted (%v); starting it again in %s\n", c.ProcessState, delay)
		// The delay, and while its pod is failed (CtlPause) the process is
		// not started, unless the platform ends it meanwhile. A request
		// now has no process to kill: a replacement sets the wait to its
		// own delay from now, and another is dropped, as a kubelet's
		// would be.
		for wait := time.Now().Add(delay); ; {
			pause := asked(base, CtlPause) // before the request: see supervise
			if r, ok := takeRestart(base); ok {
				if r.Replace {
					restarts, wait = 0, time.Now().Add(r.Delay)
					fmt.Fprintf(logw, "pod-process: its pod replaced: starting it again in %s\n", r.Delay)
				} else {
					fmt.Fprintf(logw, "pod-process: a restart request dropped: a restart is under way\n")
				}
			}
			if ended() {
				return report(terminated)
			}
			if !time.Now().Before(wait) && !pause {
				break
			}
			sleep := pollInterval
			if d := time.Until(wait); d > 0 && d < sleep {
				sleep = d
			}
			select {
			case <-sig:
				return report(terminated)
			case <-time.After(sleep):
			}
		}
	}
}

// asked says whether the platform has asked for what suffix names.
func asked(base, suffix string) bool {
	_, err := os.Stat(base + suffix)
	return err == nil
}

// supervise passes the platform's requests and the container's signals on
// to c's process group until c exits, and returns the restart that ended
// it (nil for any other end) and Wait's error. Ending (term, kill) takes
// precedence over a restart, and a stopped process gets SIGCONT after
// SIGTERM so that it can act on it. A request taken while a restart is
// under way is merged into it (Restart.merge). While no end or restart
// is under way the group is stopped exactly while CtlPause exists.
func supervise(c *exec.Cmd, base string, sig <-chan os.Signal, logw io.Writer) (*Restart, error) {
	pid := c.Process.Pid
	group := func(s syscall.Signal) { _ = syscall.Kill(-pid, s) }
	waited := make(chan error, 1)
	go func() { waited <- c.Wait() }() // returns once the output is copied (or WaitDelay after the exit)
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	var restart *Restart
	var killAt time.Time
	termed, paused := false, false
	wake := func() {
		if paused {
			group(syscall.SIGCONT)
			paused = false
		}
	}
	check := func() {
		switch {
		case asked(base, CtlKill):
			termed, restart = true, nil
			group(syscall.SIGKILL)
			return
		case asked(base, CtlTerm):
			if !termed {
				termed, restart = true, nil
				group(syscall.SIGTERM)
				wake()
			}
			return
		}
		if termed {
			return
		}
		// The pause first: the platform writes a pod-kill's request before
		// it removes the pause, so a pause seen gone here means its
		// request is seen below, and the process is not resumed first.
		pause := asked(base, CtlPause)
		if r, ok := takeRestart(base); ok {
			switch {
			case restart != nil:
				if restart.merge(r) {
					group(syscall.SIGKILL)
					killAt = time.Time{}
				}
				fmt.Fprintf(logw, "pod-process: a restart request merged into the one under way\n")
			case r.Grace <= 0:
				restart = &r
				group(syscall.SIGKILL)
			default:
				restart = &r
				group(syscall.SIGTERM)
				wake()
				killAt = time.Now().Add(r.Grace)
			}
		}
		if restart != nil {
			if !killAt.IsZero() && time.Now().After(killAt) {
				group(syscall.SIGKILL)
				killAt = time.Time{}
			}
			return
		}
		if pause != paused {
			paused = pause
			if pause {
				group(syscall.SIGSTOP)
			} else {
				group(syscall.SIGCONT)
			}
		}
	}
	check()
	for {
		select {
		case err := <-waited:
			// Nothing of the group outlives it.
			group(syscall.SIGKILL)
			if termed {
				restart = nil
			}
			return restart, err
		case s := <-sig:
			// The container is ending (its pod is deleted).
			termed, restart = true, nil
			group(s.(syscall.Signal))
			wake()
		case <-t.C:
			check()
		}
	}
}

// teeWriter writes to a file, and to the container's log as far as that
// takes it: the file is what counts.
type teeWriter struct {
	file *os.File
	log  io.Writer
}

func (w teeWriter) Write(b []byte) (int, error) {
	n, err := w.file.Write(b)
	_, _ = w.log.Write(b)
	return n, err
}
