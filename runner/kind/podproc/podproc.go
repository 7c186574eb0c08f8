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
// its container's name: the platform asks for signals with the first two;
// the wrapper writes the others.
const (
	CtlTerm   = ".term"   // send SIGTERM
	CtlKill   = ".kill"   // send SIGKILL (and do not start a process not yet started)
	CtlStdout = ".stdout" // the process's stdout (also the container's log)
	CtlStderr = ".stderr" // its stderr
	CtlExit   = ".exit"   // its exit, an ExitReport, written once the output is complete
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

// WriteExit writes the report under base+CtlExit atomically.
func WriteExit(base string, r ExitReport) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp := base + CtlExit + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, base+CtlExit)
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

// Run runs args as the process name in the control directory and returns
// the exit status to pass on. Its stdout and stderr go to files in the
// control directory (and to out and errOut, the container's log), and its
// exit to a report there once they are complete: the platform reads
// those, not the kubelet.
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
	asked := func(suffix string) bool {
		_, err := os.Stat(base + suffix)
		return err == nil
	}
	// The platform may have given up on this process before it started.
	if asked(CtlKill) || asked(CtlTerm) {
		return report(ExitReport{Code: 128 + int(syscall.SIGTERM), Signal: syscall.SIGTERM.String()})
	}
	stdout, err1 := os.Create(base + CtlStdout)
	stderr, err2 := os.Create(base + CtlStderr)
	if err := errors.Join(err1, err2); err != nil {
		return report(ExitReport{Code: 127, Error: err.Error()})
	}
	defer stdout.Close()
	defer stderr.Close()
	c := exec.Command(args[0], args[1:]...)
	c.Stdout, c.Stderr = teeWriter{stdout, out}, teeWriter{stderr, errOut}
	// Its own process group, signalled as one (nginx's workers, a
	// shell's children), as the local platform does; and the report is
	// written even if something outlives it holding the output open.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c.WaitDelay = 5 * time.Second
	if err := c.Start(); err != nil {
		return report(ExitReport{Code: 127, Error: err.Error()})
	}
	exited := make(chan struct{})
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		termed := false
		for {
			select {
			case <-exited:
				return
			case sg := <-sig:
				_ = syscall.Kill(-c.Process.Pid, sg.(syscall.Signal))
			case <-t.C:
				if asked(CtlKill) {
					_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
				} else if asked(CtlTerm) && !termed {
					termed = true
					_ = syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
				}
			}
		}
	}()
	err := c.Wait() // returns once the output is copied (or WaitDelay after the exit)
	close(exited)
	// Nothing of the group outlives it.
	_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
	if st := c.ProcessState; st != nil {
		// Its own status, also when something it left held the output
		// open past WaitDelay (exec.ErrWaitDelay).
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return report(ExitReport{Code: 128 + int(ws.Signal()), Signal: ws.Signal().String()})
		}
		return report(ExitReport{Code: st.ExitCode()})
	}
	return report(ExitReport{Code: 127, Error: err.Error()})
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
