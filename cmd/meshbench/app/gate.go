package app

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshbench/meshbench/reports"
)

func newGateCommand(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gate",
		Short: "Plan a regression gate from a run's measured noise",
		Args:  argsCheck(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newGatePlanCommand(s))
	return cmd
}

type gatePlanOptions struct {
	gate, detect, format, out string
}

func newGatePlanCommand(s Streams) *cobra.Command {
	o := &gatePlanOptions{}
	cmd := &cobra.Command{
		Use:   "plan RESULTS",
		Short: "Print the smallest change each gate rule detects, and the trials a named change needs",
		Long: `plan reads a run (a results directory, or SMPS results) and, for each row and each
relative rule of the gate, prints the row's trial-to-trial spread, the rule's
limit, and the smallest change the rule fails on 80% of the time when a
candidate run has as many trials as this one (both runs as noisy as this one).
With --detect it also prints how many trials a side each named change needs.

The numbers come from a Student's t approximation of the interval compare uses
(Hodges-Lehmann on the log of each trial's value, at the confidence the trial
counts reach); measure the gate itself with make gate-validity.`,
		Example: `  meshbench gate plan main-results/
  meshbench gate plan main-results/ --gate auto --detect p99:+10%,p50:+10%,cpu:+10%
  meshbench gate plan main-results/ --gate 'p99:+20%' --detect p99:+25% --format md`,
		Args: argsCheck(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(s, cmd, args[0]) },
	}
	f := cmd.Flags()
	f.StringVar(&o.gate, "gate", "default", "gate rules, comma-separated, or a gate's name: default or auto (as compare's)")
	f.StringVar(&o.detect, "detect", "", "changes to give the trials for, comma-separated (e.g. p99:+10%,qps:-5%)")
	f.StringVarP(&o.format, "format", "o", "table", "output format: table, md or json")
	f.StringVar(&o.out, "out", "", "write the output to this file instead of standard output")
	return cmd
}

func (o *gatePlanOptions) run(s Streams, cmd *cobra.Command, path string) error {
	gate, err := reports.ParseGate(o.gate)
	if err != nil {
		return badInput(fmt.Errorf("flag --gate: %w", err))
	}
	var detect []reports.Rule
	if cmd.Flags().Changed("detect") {
		if detect, err = reports.ParseDetect(o.detect); err != nil {
			return badInput(fmt.Errorf("flag --detect: %w", err))
		}
	}
	var write func(*reports.PowerPlan, io.Writer) error
	switch strings.ToLower(o.format) {
	case "table", "text":
		write = (*reports.PowerPlan).WriteText
	case "md", "markdown":
		write = (*reports.PowerPlan).WriteMarkdown
	case "json":
		write = (*reports.PowerPlan).WriteJSON
	default:
		return badInput(fmt.Errorf("flag --format: %q is not one of table, md, json", o.format))
	}
	_, trials, err := loadResults(path)
	if err != nil {
		return badResults(err)
	}
	p := reports.Plan(path, trials, gate, detect)
	if len(p.Rows) == 0 {
		return badInput(fmt.Errorf("%s: no row with a metric a relative rule of the gate applies to (fixed-rate rows other than the no-mesh baseline)", path))
	}
	return writeOutput(s.Out, o.out, func(w io.Writer) error { return write(p, w) })
}
