package app

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/meshbench/meshbench/scenarios"
)

func newScenariosCommand(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scenarios",
		Short: "List, show and validate scenarios",
		Args:  argsCheck(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(
		&cobra.Command{
			Use:     "list",
			Short:   "List the built-in scenarios",
			Args:    argsCheck(cobra.NoArgs),
			Example: "  meshbench scenarios list",
			RunE: func(*cobra.Command, []string) error {
				tw := tabwriter.NewWriter(s.Out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tDESCRIPTION")
				for _, b := range scenarios.Builtins() {
					name := b.Name
					if name == scenarios.DefaultName {
						name += " (default)"
					}
					fmt.Fprintf(tw, "%s\t%s\n", name, b.Description)
				}
				return tw.Flush()
			},
		},
		&cobra.Command{
			Use:               "show NAME",
			Short:             "Print a built-in scenario's YAML",
			Args:              argsCheck(cobra.ExactArgs(1)),
			Example:           "  meshbench scenarios show default > my-scenario.yaml",
			ValidArgsFunction: completeBuiltins,
			RunE: func(_ *cobra.Command, args []string) error {
				for _, b := range scenarios.Builtins() {
					if b.Name == args[0] {
						_, err := s.Out.Write(b.Source)
						return err
					}
				}
				return badInput(fmt.Errorf("no built-in scenario %q (built-in: %s)", args[0], builtinNames()))
			},
		},
		&cobra.Command{
			Use:   "validate FILE|NAME...",
			Short: "Check scenario files (or built-in scenarios, by name) and report every error with file:line:column",
			Args:  argsCheck(cobra.MinimumNArgs(1)),
			Example: `  meshbench scenarios validate my-scenario.yaml
  meshbench scenarios validate scenarios/*.yaml
  meshbench scenarios validate gameday-partition`,
			RunE: func(_ *cobra.Command, args []string) error {
				var errs []error
				for _, path := range args {
					// As run resolves it: a file, else a built-in name.
					if _, err := loadScenario([]string{path}); err != nil {
						fmt.Fprintln(s.ErrOut, describeLoadError(path, err))
						errs = append(errs, err)
						continue
					}
					fmt.Fprintf(s.Out, "%s: valid\n", path)
				}
				if len(errs) > 0 {
					return &reported{err: badInput(fmt.Errorf("%d of %d scenario files are invalid", len(errs), len(args)))}
				}
				return nil
			},
		},
	)
	return cmd
}

// describeLoadError renders a scenario loading error; file-system errors
// get the path, scenario errors already carry file:line:column.
func describeLoadError(path string, err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s: %v", path, pe.Err)
	}
	return err.Error()
}

func builtinNames() string {
	var names []string
	for _, b := range scenarios.Builtins() {
		names = append(names, b.Name)
	}
	return strings.Join(names, ", ")
}

func completeBuiltins(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	for _, b := range scenarios.Builtins() {
		out = append(out, b.Name+"\t"+b.Description)
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
