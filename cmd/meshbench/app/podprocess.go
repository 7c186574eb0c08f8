package app

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshbench/meshbench/runner/kind"
)

type podProcessOptions struct {
	control, name string
	hold          bool
}

// newPodProcessCommand is what every container of the kind platform
// runs: with --hold, the pod's holder (it keeps the network namespace and
// ends at SIGTERM); otherwise it runs a process of a unit, its stdout the
// container's log and its stderr a file in the control directory, and
// passes on SIGTERM or SIGKILL when the platform asks for them there (an
// ephemeral container cannot be stopped through the API). It exits with
// the process's status.
func newPodProcessCommand(s Streams) *cobra.Command {
	o := &podProcessOptions{}
	cmd := &cobra.Command{
		Use:    "pod-process [--hold | --control DIR --name NAME -- COMMAND ARGS...]",
		Short:  "Run a process of a unit in a kind pod (started by the platform)",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.hold {
				sig := make(chan os.Signal, 1)
				signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
				select {
				case <-sig:
				case <-cmd.Context().Done():
				}
				return nil
			}
			if o.control == "" || o.name == "" || len(args) == 0 {
				return badInput(errors.New("want --hold, or --control, --name and a command"))
			}
			os.Exit(o.run(s, args))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.control, "control", "", "the control directory: NAME.term and NAME.kill there signal the process; its stderr goes to NAME.stderr")
	f.StringVar(&o.name, "name", "", "the container's name")
	f.BoolVar(&o.hold, "hold", false, "hold the pod: wait for SIGTERM")
	return cmd
}

// run runs the process and returns the exit status to pass on. Its
// stdout and stderr go to files in the control directory (and to the
// container's log), and its exit to a report there once they are
// complete: the platform reads those, not the kubelet.
func (o *podProcessOptions) run(s Streams, args []string) int {
	base := filepath.Join(o.control, o.name)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	report := func(r kind.ExitReport) int {
		if err := kind.WriteExit(base, r); err != nil {
			fmt.Fprintf(s.ErrOut, "meshbench pod-process: %v\n", err)
		}
		return r.Code
	}
	asked := func(suffix string) bool {
		_, err := os.Stat(base + suffix)
		return err == nil
	}
	// The platform may have given up on this process before it started.
	if asked(kind.CtlKill) || asked(kind.CtlTerm) {
		return report(kind.ExitReport{Code: 128 + int(syscall.SIGTERM), Signal: syscall.SIGTERM.String()})
	}
	stdout, err1 := os.Create(base + kind.CtlStdout)
	stderr, err2 := os.Create(base + kind.CtlStderr)
	if err := errors.Join(err1, err2); err != nil {
		return report(kind.ExitReport{Code: 127, Error: err.Error()})
	}
	defer stdout.Close()
	defer stderr.Close()
	c := exec.Command(args[0], args[1:]...)
	c.Stdout, c.Stderr = teeWriter{stdout, s.Out}, teeWriter{stderr, s.ErrOut}
	// Its own process group, signalled as one (nginx's workers, a
	// shell's children), as the local platform does; and the report is
	// written even if something outlives it holding the output open.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c.WaitDelay = 5 * time.Second
	if err := c.Start(); err != nil {
		return report(kind.ExitReport{Code: 127, Error: err.Error()})
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
				if asked(kind.CtlKill) {
					_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
				} else if asked(kind.CtlTerm) && !termed {
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
			return report(kind.ExitReport{Code: 128 + int(ws.Signal()), Signal: ws.Signal().String()})
		}
		return report(kind.ExitReport{Code: st.ExitCode()})
	}
	return report(kind.ExitReport{Code: 127, Error: err.Error()})
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
