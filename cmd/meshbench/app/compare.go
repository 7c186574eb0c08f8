package app

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshbench/meshbench/reports"
	"github.com/meshbench/meshbench/runner/results"
)

type compareOptions struct {
	gate         string
	inconclusive string
	format       string
	out          string
	seed         uint64
	history      string
	scenario     string
	window       int
	paired       bool
}

func newCompareCommand(s Streams) *cobra.Command {
	o := &compareOptions{}
	cmd := &cobra.Command{
		Use:   "compare BASE CANDIDATE | compare --history INDEX_DIR CANDIDATE | compare --paired RESULTS",
		Short: "Compare two runs and, with --gate, decide whether the candidate regressed",
		Long: `compare matches the (mesh, mode, rate) rows of two runs (results directories, or
directories or files of SMPS results) and reports each metric's change as the
ratio candidate/base with a 95% confidence interval (Hodges-Lehmann estimate,
Mann-Whitney interval, over the trials of each side).

--gate applies rules to every matched row. A relative rule METRIC:+N% fails
when the whole interval of the ratio lies above 1+N%, passes when it lies at or
below, and is inconclusive when it straddles the limit; METRIC:-N% is the same
for drops (qps:-5%). errors:N caps the candidate's failed requests in total,
errors:N% as a share. METRIC:auto takes its limit per row from the base run's
own trial-to-trial spread: the change within which an unchanged candidate's
interval falls 99.5% of the time (at least 1%); every verdict says its limit and
the smallest change it detects at 80% power. --gate default applies
` + reports.DefaultGate + `, --gate auto ` + reports.AutoGate + `.

--history INDEX_DIR judges the candidate against a results index's series of
published runs (meshbench publish --to DIR) instead of one base run: the latest
--window runs of the candidate's scenario. Each row's ratio is the candidate's
median over the runs' geometric mean, its interval as wide as the series'
run-to-run spread, which is the noise a single candidate run carries and no
single base run can show; auto limits come from that spread.

--paired RESULTS compares, within one run made with run --candidate-binary,
every MESH` + reports.CandidateSuffix + ` row with its MESH row, trial by trial: the ratio is the
Hodges-Lehmann estimate of the trials' own ratios with the Wilcoxon signed-rank
interval (6 trials or more reach 95%), so what a trial's two rows share (the
machine's drift) cancels.

Metrics: ` + reports.MetricNames() + `.

Exit codes: 0 the gate passed (or no gate), 1 it failed, 2 bad input,
3 inconclusive (--inconclusive=pass or =fail turns that into 0 or 1).`,
		Example: `  meshbench compare main-results/ pr-results/
  meshbench compare main-results/ pr-results/ --gate 'p99:+5%,p50:+5%,cpu:+10%,errors:0'
  meshbench compare main/ pr/ --gate auto --format md >> "$GITHUB_STEP_SUMMARY"
  meshbench compare main/ pr/ --gate default --format junit --out gate.xml
  meshbench compare --history /srv/meshbench-index nightly-results/ --gate auto
  meshbench compare --paired pr-results/ --gate auto`,
		Args: argsCheck(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(s, cmd, args) },
	}
	f := cmd.Flags()
	f.StringVar(&o.gate, "gate", "", "gate rules, comma-separated, or a gate's name: default ("+reports.DefaultGate+") or auto ("+reports.AutoGate+")")
	f.StringVar(&o.inconclusive, "inconclusive", string(reports.InconclusiveStays), "what an inconclusive gate exits with: inconclusive (3), pass (0) or fail (1)")
	f.StringVarP(&o.format, "format", "o", "table", "output format: table, md, junit or json")
	f.StringVar(&o.out, "out", "", "write the output to this file instead of standard output")
	f.Uint64Var(&o.seed, "seed", reports.DefaultSeed, "seed of the bootstrap resampling (results are reproducible for a seed)")
	f.StringVar(&o.history, "history", "", "results index to judge the candidate against (then give only CANDIDATE)")
	f.StringVar(&o.scenario, "scenario", "", "with --history: the scenario's series to use (default: the candidate's)")
	f.IntVar(&o.window, "window", reports.DefaultWindow, "with --history: how many of the latest runs to judge by")
	f.BoolVar(&o.paired, "paired", false, "compare the candidate build's rows of one run (run --candidate-binary) with the base build's, trial by trial")
	return cmd
}

func (o *compareOptions) run(s Streams, cmd *cobra.Command, args []string) error {
	var rules []reports.Rule
	if cmd.Flags().Changed("gate") {
		var err error
		if rules, err = reports.ParseGate(o.gate); err != nil {
			return badInput(fmt.Errorf("flag --gate: %w", err))
		}
	}
	policy := reports.Policy(o.inconclusive)
	switch policy {
	case reports.InconclusiveStays, reports.InconclusivePass, reports.InconclusiveFail:
	default:
		return badInput(fmt.Errorf("flag --inconclusive: %q is not one of inconclusive, pass, fail", o.inconclusive))
	}
	write, err := compareWriter(o.format)
	if err != nil {
		return err
	}
	var c *reports.Comparison
	if o.paired {
		if cmd.Flags().Changed("history") {
			return badInput(fmt.Errorf("flag --paired: compares rows of one run; --history compares a run with others: give one"))
		}
		for _, name := range []string{"scenario", "window"} {
			if cmd.Flags().Changed(name) {
				return badInput(fmt.Errorf("flag --%s: only applies with --history", name))
			}
		}
		if len(args) != 1 {
			return badInput(fmt.Errorf("flag --paired: give one results directory (its base and candidate rows are compared), got %d arguments", len(args)))
		}
		_, trials, err := loadResults(args[0])
		if err != nil {
			return badResults(err)
		}
		var ok bool
		if c, ok = reports.ComparePaired(args[0], trials, rules, o.seed); !ok {
			return badInput(fmt.Errorf("flag --paired: %s has no MESH%s row beside its MESH row: make the run with run --candidate-binary", args[0], reports.CandidateSuffix))
		}
	} else if o.history != "" || cmd.Flags().Changed("history") {
		if c, err = o.compareHistory(args, rules); err != nil {
			return err
		}
	} else {
		if len(args) != 2 {
			return badInput(fmt.Errorf("give BASE and CANDIDATE, or --history INDEX_DIR and CANDIDATE"))
		}
		for _, name := range []string{"scenario", "window"} {
			if cmd.Flags().Changed(name) {
				return badInput(fmt.Errorf("flag --%s: only applies with --history", name))
			}
		}
		_, base, err := loadResults(args[0])
		if err != nil {
			return badResults(fmt.Errorf("BASE: %w", err))
		}
		_, cand, err := loadResults(args[1])
		if err != nil {
			return badResults(fmt.Errorf("CANDIDATE: %w", err))
		}
		c = reports.Compare(args[0], base, args[1], cand, rules, o.seed)
	}
	if err := writeOutput(s.Out, o.out, func(w io.Writer) error { return write(c, w, policy) }); err != nil {
		return err
	}
	if len(rules) == 0 {
		return nil
	}
	switch final := c.Final(policy); final {
	case reports.Fail:
		return &gateError{code: ExitFailed, msg: "gate failed"}
	case reports.Inconclusive:
		return &gateError{code: ExitInconclusive, msg: "gate inconclusive"}
	}
	return nil
}

// compareHistory judges the candidate against the history's latest runs
// of its scenario, leaving the candidate's own run out of them.
func (o *compareOptions) compareHistory(args []string, rules []reports.Rule) (*reports.Comparison, error) {
	if len(args) != 1 {
		return nil, badInput(fmt.Errorf("flag --history: give only CANDIDATE (the history is the base), got %d arguments", len(args)))
	}
	if o.history == "" {
		return nil, badInput(fmt.Errorf("flag --history: give a results index directory"))
	}
	if o.window < reports.MinHistoryRuns || o.window > 10000 {
		return nil, badInput(fmt.Errorf("flag --window: must be between %d and 10000, got %d", reports.MinHistoryRuns, o.window))
	}
	runs, err := historyRuns(o.history)
	if err != nil {
		return nil, badResults(fmt.Errorf("flag --history: %w", err))
	}
	m, cand, err := loadResults(args[0])
	if err != nil {
		return nil, badResults(fmt.Errorf("CANDIDATE: %w", err))
	}
	scenario := o.scenario
	switch all := runScenarios(runs); {
	case scenario != "":
	case m != nil && m.Scenario != nil:
		scenario = m.Scenario.Name
	case len(all) == 1:
		scenario = all[0]
	default:
		return nil, badInput(fmt.Errorf("flag --scenario: the candidate does not say its scenario and %s holds several (%s): name one", o.history, strings.Join(all, ", ")))
	}
	runs = scenarioRuns(runs, scenario)
	if m != nil {
		runs = slices.DeleteFunc(runs, func(r reports.HistoryRun) bool { return r.ID == m.RunID })
	}
	if len(runs) == 0 {
		return nil, badInput(fmt.Errorf("flag --history: %s has no runs of scenario %q other than the candidate", o.history, scenario))
	}
	h := reports.HistoryBase{Dir: o.history, Scenario: scenario, Window: o.window}
	return reports.CompareHistory(h, runs, args[0], cand, rules, o.seed), nil
}

func compareWriter(format string) (func(*reports.Comparison, io.Writer, reports.Policy) error, error) {
	switch strings.ToLower(format) {
	case "table", "text":
		return (*reports.Comparison).WriteText, nil
	case "md", "markdown":
		return (*reports.Comparison).WriteMarkdown, nil
	case "junit":
		return (*reports.Comparison).WriteJUnit, nil
	case "json":
		return (*reports.Comparison).WriteJSON, nil
	}
	return nil, badInput(fmt.Errorf("flag --format: %q is not one of table, md, junit, json", format))
}

// writeOutput renders to the file (atomically) or to standard output.
func writeOutput(stdout io.Writer, path string, render func(io.Writer) error) error {
	if path == "" {
		return render(stdout)
	}
	var sb strings.Builder
	if err := render(&sb); err != nil {
		return err
	}
	if err := results.WriteFile(path, []byte(sb.String())); err != nil {
		return fmt.Errorf("flag --out: %w", err)
	}
	return nil
}
