package app

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshbench/meshbench/reports"
	"github.com/meshbench/meshbench/scenarios"
)

type reportOptions struct {
	format string
	out    string
	slos   []string
	seed   uint64
}

func newReportCommand(s Streams) *cobra.Command {
	o := &reportOptions{}
	cmd := &cobra.Command{
		Use:   "report RESULTS_DIR",
		Short: "Write a run's report: text, Markdown, self-contained HTML, JSON or JUnit",
		Long: `report summarizes a results directory: the comparison table, every metric's
median over trials with a 95% bootstrap interval and its trial-to-trial spread,
the harness floor, max searches, and the scenario's objectives (slos), each
checked against every (mesh, mode, rate) it applies to.

Formats: text (the default), md (GitHub step summaries), html (one
self-contained file with charts: latency percentile curves, added latency with
intervals, CPU and memory per 1000 rps, rate sweeps, and for a run with faults
the window second by second with the faults shaded), json, and junit (one test
case per objective and row, and per probe and row). A scenario with probes
(a game day) gets each row's verdict, resilience score and faults' times to
detect and recover. An objective that does not hold, or a game day whose
probes failed in a trial, makes the command exit 1 (after writing the report).`,
		Example: `  meshbench report meshbench-results/default-20261122T050000Z
  meshbench report results/ --format html --out report.html
  meshbench report results/ --format junit --slo 'p99 < 2ms at 1000 rps' --slo 'errors == 0' --out slo.xml`,
		Args: argsCheck(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(s, args[0]) },
	}
	f := cmd.Flags()
	f.StringVarP(&o.format, "format", "o", "text", "output format: text, md, html, json or junit")
	f.StringVar(&o.out, "out", "", "write the report to this file instead of standard output")
	f.StringArrayVar(&o.slos, "slo", nil, "an objective to check besides the scenario's, e.g. 'p99 < 2ms at 1000 rps' (repeatable)")
	f.Uint64Var(&o.seed, "seed", reports.DefaultSeed, "seed of the bootstrap resampling")
	return cmd
}

func (o *reportOptions) run(s Streams, dir string) error {
	var extra []scenarios.Objective
	for _, text := range o.slos {
		obj, err := scenarios.ParseObjective(text)
		if err != nil {
			return badInput(fmt.Errorf("flag --slo: %w", err))
		}
		extra = append(extra, obj)
	}
	var render func(*reports.Report, io.Writer) error
	switch strings.ToLower(o.format) {
	case "text", "table":
		render = (*reports.Report).WriteText
	case "md", "markdown":
		render = (*reports.Report).WriteMarkdown
	case "html":
		render = (*reports.Report).WriteHTML
	case "json":
		render = (*reports.Report).WriteJSON
	case "junit":
		render = (*reports.Report).WriteJUnit
	default:
		return badInput(fmt.Errorf("flag --format: %q is not one of text, md, html, json, junit", o.format))
	}
	m, trials, err := loadResults(dir)
	if err != nil {
		return badResults(err)
	}
	r := reports.NewReport(m, trials, extra, o.seed)
	if m != nil {
		r.LoadHistograms(dir)
		r.LoadProfiles(dir)
	}
	if err := writeOutput(s.Out, o.out, func(w io.Writer) error { return render(r, w) }); err != nil {
		return err
	}
	if r.Failed() {
		return &gateError{code: ExitFailed, msg: "an objective does not hold, or a game day failed"}
	}
	return nil
}
