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
	// Delay is the time between its end and its new start.
	Delay time.Duration `json:"delay,omitempty"`
}

// WriteExit writes the report under base+CtlExit atomically.
func WriteExit(base string, r ExitReport) error { return writeJSON(base+CtlExit, r) }

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

// takeRestart reads and removes a restart request, if there is one.
func takeRestart(base string) (Restart, bool) {
	var r Restart
	data, err := os.ReadFile(base + CtlRestart)
	if err != nil {
		return r, false
	}
	_ = os.Remove(base + CtlRestart)
	if json.Unmarshal(data, &r) != nil {
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
	report := func(r ExitReport) int {
		if err := WriteExit(base, r); err != nil {
			fmt.Fprintf(errOut, "pod-process: %v\n", err)
		}
		return r.Code
	}
	ended := func() bool { return asked(base, CtlKill) || asked(base, CtlTerm) }
	terminated := ExitReport{Code: 128 + int(syscall.SIGTERM), Signal: syscall.SIGTERM.String()}
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
		restart, err := supervise(c, base, sig)
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
		fmt.Fprintf(teeWriter{stderr, errOut}, "pod-process: killed to be restarted (%v); starting it again in %s\n", c.ProcessState, restart.Delay)
		// The delay, unless the platform ends the process meanwhile. A
		// process being restarted is left alone: a restart asked for now
		// is taken and dropped, as a kubelet's would be.
		for wait := time.Now().Add(restart.Delay); time.Now().Before(wait); {
			_, _ = takeRestart(base)
			if ended() {
				return report(terminated)
			}
			select {
			case <-sig:
				return report(terminated)
			case <-time.After(min(pollInterval, time.Until(wait))):
			}
		}
		_, _ = takeRestart(base)
		if ended() {
			return report(terminated)
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
// SIGTERM so that it can act on it. While no end or restart is under way
// the group is stopped exactly while CtlPause exists (a restarted process
// of a failed pod stays stopped).
func supervise(c *exec.Cmd, base string, sig <-chan os.Signal) (*Restart, error) {
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
		if restart == nil {
			if r, ok := takeRestart(base); ok {
				restart = &r
				if r.Grace <= 0 {
					group(syscall.SIGKILL)
					return
				}
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
		if p := asked(base, CtlPause); p != paused {
			paused = p
			if p {
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
