package app

import (
	"errors"
	"os"

	"github.com/spf13/cobra"

	"github.com/meshbench/meshbench/runner/kind/podproc"
)

// podProcessCommand is the wrapper's own binary (cmd/meshbench-pod-process).
const podProcessCommand = "meshbench-pod-process"

type podProcessOptions struct {
	control, name     string
	hold, await, idle bool
}

// newPodProcessCommand is the wrapper of every container of the kind
// platform (package podproc), where the pods' image lacks
// meshbench-pod-process: with --hold, the pod's holder (it keeps the
// network namespace and ends at SIGTERM); otherwise it runs a process of a unit, its stdout the
// container's log and its stderr a file in the control directory, and
// passes on SIGTERM or SIGKILL when the platform asks for them there (an
// ephemeral container cannot be stopped through the API); with --await,
// it takes the command line from the control directory (a container of a
// pod's template, made before its configuration). It exits with
// the process's status. It handles SIGTERM and SIGINT itself: main runs
// it without meshbench's interrupt handling.
func newPodProcessCommand(s Streams) *cobra.Command {
	o := &podProcessOptions{}
	cmd := &cobra.Command{
		Use:    "pod-process [--hold | --control DIR --name NAME (-- COMMAND ARGS... | --await [--idle])]",
		Short:  "Run a process of a unit in a kind pod (started by the platform)",
		Hidden: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.hold {
				podproc.Hold(cmd.Context().Done())
				return nil
			}
			if o.control == "" || o.name == "" || (len(args) == 0) != o.await || o.idle && !o.await {
				return badInput(errors.New("want --hold, or --control, --name and a command, or --control, --name and --await [--idle]"))
			}
			if o.await {
				os.Exit(podproc.Await(o.control, o.name, o.idle, s.Out, s.ErrOut))
			}
			os.Exit(podproc.Run(o.control, o.name, args, s.Out, s.ErrOut))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.control, "control", "", "the control directory: NAME.term and NAME.kill there signal the process; its stderr goes to NAME.stderr")
	f.StringVar(&o.name, "name", "", "the container's name")
	f.BoolVar(&o.hold, "hold", false, "hold the pod: wait for SIGTERM")
	f.BoolVar(&o.await, "await", false, "take the command line from NAME.argv in the control directory once it is there (a container of a pod's template)")
	f.BoolVar(&o.idle, "idle", false, "with --await: once the process has ended, wait for SIGTERM (a sidecar, which the kubelet would restart)")
	return cmd
}
