package app

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshbench/meshbench/reports"
	"github.com/meshbench/meshbench/smps"
)

type historyOptions struct {
	scenario, metrics, format, out string
	alpha                          float64
	minSegment, permutations       int
	seed                           uint64
	failOnRegression               bool
}

func newHistoryCommand(s Streams) *cobra.Command {
	o := &historyOptions{}
	cmd := &cobra.Command{
		Use:   "history INDEX_DIR",
		Short: "Find the change points in a results index's series of published runs",
		Long: `history reads a results index (what meshbench publish --to DIR writes) as series:
one per scenario, mesh/mode@rate row and metric, each run's value its median over
trials, oldest first. It finds the runs where a series' level shifted (change
points) by binary segmentation with a permutation test, in the manner of the
E-Divisive detector Apache Otava runs on nightly benchmarks, and prints them with
the levels before and after. A nightly job sees a drift there that no single pair
of runs can: judge one candidate against the series with compare --history.

--format html draws every series with its levels and change points.
Exit codes: 0, or 1 with --fail-on-regression when a series' latest change point
is a regression; 2 bad input.`,
		Example: `  meshbench history /srv/meshbench-index
  meshbench history /srv/meshbench-index --metric p99 --format html --out history.html
  meshbench history /srv/meshbench-index --scenario nightly --fail-on-regression --format md >> "$GITHUB_STEP_SUMMARY"`,
		Args: argsCheck(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(s, args[0]) },
	}
	f := cmd.Flags()
	d := reports.DefaultChangeOptions
	f.StringVar(&o.scenario, "scenario", "", "only this scenario's runs (default: every scenario in the index)")
	f.StringVar(&o.metrics, "metric", strings.Join(reports.HistoryMetrics, ","), "metrics to follow, comma-separated ("+reports.MetricNames()+")")
	f.Float64Var(&o.alpha, "alpha", d.Alpha, "p-value below which a split is a change point")
	f.IntVar(&o.minSegment, "min-segment", d.MinSegment, "fewest runs a level must last")
	f.IntVar(&o.permutations, "permutations", d.Permutations, "shuffles of each permutation test")
	f.Uint64Var(&o.seed, "seed", d.Seed, "seed of the permutation tests (results are reproducible for a seed)")
	f.StringVarP(&o.format, "format", "o", "table", "output format: table, md, json or html")
	f.StringVar(&o.out, "out", "", "write the output to this file instead of standard output")
	f.BoolVar(&o.failOnRegression, "fail-on-regression", false, "exit 1 when a series' latest change point is a regression")
	return cmd
}

func (o *historyOptions) run(s Streams, dir string) error {
	var write func(*reports.HistoryReport, io.Writer) error
	switch strings.ToLower(o.format) {
	case "table", "text":
		write = (*reports.HistoryReport).WriteText
	case "md", "markdown":
		write = (*reports.HistoryReport).WriteMarkdown
	case "json":
		write = (*reports.HistoryReport).WriteJSON
	case "html":
		write = (*reports.HistoryReport).WriteHTML
	default:
		return badInput(fmt.Errorf("flag --format: %q is not one of table, md, json, html", o.format))
	}
	var metrics []reports.Metric
	for _, name := range strings.Split(o.metrics, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		m, ok := reports.MetricByName(name)
		if !ok {
			return badInput(fmt.Errorf("flag --metric: unknown metric %q (known: %s)", name, reports.MetricNames()))
		}
		metrics = append(metrics, m)
	}
	switch {
	case len(metrics) == 0:
		return badInput(fmt.Errorf("flag --metric: give one or more metrics (%s)", reports.MetricNames()))
	case !(o.alpha > 0 && o.alpha < 1):
		return badInput(fmt.Errorf("flag --alpha: must be between 0 and 1, got %g", o.alpha))
	case o.minSegment < 2 || o.minSegment > 1000:
		return badInput(fmt.Errorf("flag --min-segment: must be between 2 and 1000, got %d", o.minSegment))
	case o.permutations < 99 || o.permutations > 100000:
		return badInput(fmt.Errorf("flag --permutations: must be between 99 and 100000, got %d", o.permutations))
	case 1/float64(o.permutations+1) >= o.alpha:
		return badInput(fmt.Errorf("flag --permutations: %d shuffles cannot reach p below --alpha %g", o.permutations, o.alpha))
	}
	runs, err := historyRuns(dir)
	if err != nil {
		return badResults(err)
	}
	if o.scenario != "" {
		if runs = scenarioRuns(runs, o.scenario); len(runs) == 0 {
			return badInput(fmt.Errorf("flag --scenario: %s has no runs of scenario %q", dir, o.scenario))
		}
	}
	h := reports.NewHistoryReport(dir, runs, metrics, reports.ChangeOptions{Alpha: o.alpha, MinSegment: o.minSegment, Permutations: o.permutations, Seed: o.seed})
	if err := writeOutput(s.Out, o.out, func(w io.Writer) error { return write(h, w) }); err != nil {
		return err
	}
	if reg := h.Regressed(); o.failOnRegression && len(reg) > 0 {
		var names []string
		for _, s := range reg {
			names = append(names, s.Scenario+" "+s.Key+" "+s.Metric)
		}
		msg := "regressed: " + strings.Join(names, ", ")
		fmt.Fprintln(s.ErrOut, "meshbench history: "+msg)
		return &gateError{code: ExitFailed, msg: msg}
	}
	return nil
}

// historyRuns reads a results index's runs, oldest first.
func historyRuns(dir string) ([]reports.HistoryRun, error) {
	published, err := smps.ReadHistory(dir)
	if err != nil {
		return nil, err
	}
	return toHistoryRuns(published), nil
}

func toHistoryRuns(published []smps.PublishedRun) []reports.HistoryRun {
	runs := make([]reports.HistoryRun, 0, len(published))
	for _, p := range published {
		runs = append(runs, reports.HistoryRun{ID: p.Entry.RunID, Start: p.Entry.Start, Scenario: p.Entry.Scenario, Trials: p.Trials})
	}
	return runs
}

// scenarioRuns are the runs of one scenario.
func scenarioRuns(runs []reports.HistoryRun, scenario string) []reports.HistoryRun {
	return slices.DeleteFunc(slices.Clone(runs), func(r reports.HistoryRun) bool { return r.Scenario != scenario })
}

// runScenarios lists the scenarios of runs, in order of appearance.
func runScenarios(runs []reports.HistoryRun) []string {
	var out []string
	for _, r := range runs {
		if !slices.Contains(out, r.Scenario) {
			out = append(out, r.Scenario)
		}
	}
	return out
}
