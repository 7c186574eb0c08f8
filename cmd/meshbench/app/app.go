// Package app holds meshbench's cobra commands. Each sub-command lives in
// its own file with its flags in a small options struct; the libraries
// they call never see a flag.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshbench/meshbench/cmd/internal/role"
	"github.com/meshbench/meshbench/scenarios"
)

// Exit codes.
const (
	ExitOK       = 0
	ExitFailed   = 1 // the run (or command) failed
	ExitBadInput = 2 // bad flags, arguments or scenario
	// ExitInconclusive: a regression gate could not decide (compare).
	ExitInconclusive = 3
)

// Version information, set at build time with -ldflags -X.
var (
	version = "dev"
	commit  = "unknown"
)

// Streams are the command's standard streams.
type Streams struct {
	In          io.Reader
	Out, ErrOut io.Writer
}

// badInput marks err as bad input: exit code 2.
func badInput(err error) error { return role.BadInput(err) }

// reported marks an error already printed (e.g. a run's summary), so that
// Run does not print it again.
type reported struct{ err error }

func (e *reported) Error() string { return e.err.Error() }
func (e *reported) Unwrap() error { return e.err }

// gateError is a gate's verdict other than pass, already printed.
type gateError struct {
	code int
	msg  string
}

func (e *gateError) Error() string { return e.msg }

// ExitCode maps an error from Run to the process exit code.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ge *gateError
	if errors.As(err, &ge) {
		return ge.code
	}
	var bad *role.BadInputError
	var el scenarios.ErrorList
	var fe *scenarios.FieldError
	if errors.As(err, &bad) || errors.As(err, &el) || errors.As(err, &fe) {
		return ExitBadInput
	}
	return ExitFailed
}

// Run executes the meshbench command line and prints any error once.
func Run(ctx context.Context, s Streams, args []string) error {
	root := newRoot(s)
	root.SetArgs(args)
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.ErrOut)
	err := root.ExecuteContext(ctx)
	if err != nil && strings.HasPrefix(err.Error(), "required flag(s) ") {
		// cobra's own check, which its flag error hook does not see.
		err = badInput(err)
	}
	var rep *reported
	var ge *gateError
	if err != nil && !errors.As(err, &rep) && !errors.As(err, &ge) {
		fmt.Fprintf(s.ErrOut, "meshbench: %v\n", err)
		if ExitCode(err) == ExitBadInput && isCommandLineError(err) {
			fmt.Fprintln(s.ErrOut, "Run 'meshbench --help' for usage.")
		}
	}
	return err
}

func isCommandLineError(err error) bool {
	var el scenarios.ErrorList
	var fe *scenarios.FieldError
	var bad *role.BadInputError
	return !errors.As(err, &el) && !errors.As(err, &fe) && !(errors.As(err, &bad) && bad.File)
}

func newRoot(s Streams) *cobra.Command {
	root := &cobra.Command{
		Use:   "meshbench",
		Short: "Benchmark service meshes: sidecar, per-node and proxyless, side by side",
		Long: `meshbench stands up a platform, deploys a test application with and without a
service mesh, drives load with fortio, and writes SMPS (Service Mesh Performance)
results and a table that compares the meshes and their data-plane modes.`,
		Example: `  # Run the default scenario (baseline vs meshbench sidecar) and print the table
  meshbench run

  # A shorter run of the default scenario with overrides
  meshbench run default --duration 5s --qps 500 --trials 1

  # See and check scenarios
  meshbench scenarios list
  meshbench scenarios validate my-scenario.yaml`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return badInput(err) })
	root.AddCommand(newRunCommand(s), newCompareCommand(s), newReportCommand(s), newPublishCommand(s), newScenariosCommand(s), newVersionCommand(s),
		newWorkloadCommand(s), role.NewProxyCommand(s.Out, s.ErrOut), newControlPlaneCommand(s), newGateCommand(s), newHistoryCommand(s), newXDSClientsCommand(s), newConformanceCommand(s), newClusterCommand(s), newOCIRuntimeCommand(s), newRedirectCommand(s), newPodProcessCommand(s), newFaultAgentCommand(s))
	return root
}

// exactArgs is cobra.ExactArgs with bad-input errors.
func argsCheck(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		return badInput(check(cmd, args))
	}
}
