package app

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"
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

// run runs the process and returns the exit status to pass on.
func (o *podProcessOptions) run(s Streams, args []string) int {
	base := filepath.Join(o.control, o.name)
	stderr, err := os.Create(base + ".stderr")
	if err != nil {
		fmt.Fprintf(s.ErrOut, "meshbench pod-process: %v\n", err)
		return 127
	}
	defer stderr.Close()
	c := exec.Command(args[0], args[1:]...)
	c.Stdout, c.Stderr = os.Stdout, stderr
	if err := c.Start(); err != nil {
		fmt.Fprintf(stderr, "meshbench pod-process: %v\n", err)
		fmt.Fprintf(s.ErrOut, "meshbench pod-process: %v\n", err)
		return 127
	}
	exited := make(chan struct{})
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		termed := false
		for {
			select {
			case <-exited:
				return
			case sg := <-sig:
				_ = c.Process.Signal(sg)
			case <-t.C:
				if _, err := os.Stat(base + ".kill"); err == nil {
					_ = c.Process.Kill()
				} else if _, err := os.Stat(base + ".term"); err == nil && !termed {
					termed = true
					_ = c.Process.Signal(syscall.SIGTERM)
				}
			}
		}
	}()
	err = c.Wait()
	close(exited)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	if err != nil {
		fmt.Fprintf(stderr, "meshbench pod-process: %v\n", err)
		return 127
	}
	return 0
}
