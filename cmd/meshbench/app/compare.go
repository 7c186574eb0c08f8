package app

import (
	"fmt"
	"io"
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
}

func newCompareCommand(s Streams) *cobra.Command {
	o := &compareOptions{}
	cmd := &cobra.Command{
		Use:   "compare BASE CANDIDATE",
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

Metrics: ` + reports.MetricNames() + `.

Exit codes: 0 the gate passed (or no gate), 1 it failed, 2 bad input,
3 inconclusive (--inconclusive=pass or =fail turns that into 0 or 1).`,
		Example: `  meshbench compare main-results/ pr-results/
  meshbench compare main-results/ pr-results/ --gate 'p99:+5%,p50:+5%,cpu:+10%,errors:0'
  meshbench compare main/ pr/ --gate auto --format md >> "$GITHUB_STEP_SUMMARY"
  meshbench compare main/ pr/ --gate default --format junit --out gate.xml`,
		Args: argsCheck(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(s, cmd, args) },
	}
	f := cmd.Flags()
	f.StringVar(&o.gate, "gate", "", "gate rules, comma-separated, or a gate's name: default ("+reports.DefaultGate+") or auto ("+reports.AutoGate+")")
	f.StringVar(&o.inconclusive, "inconclusive", string(reports.InconclusiveStays), "what an inconclusive gate exits with: inconclusive (3), pass (0) or fail (1)")
	f.StringVarP(&o.format, "format", "o", "table", "output format: table, md, junit or json")
	f.StringVar(&o.out, "out", "", "write the output to this file instead of standard output")
	f.Uint64Var(&o.seed, "seed", reports.DefaultSeed, "seed of the bootstrap resampling (results are reproducible for a seed)")
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
	_, base, err := loadResults(args[0])
	if err != nil {
		return badResults(fmt.Errorf("BASE: %w", err))
	}
	_, cand, err := loadResults(args[1])
	if err != nil {
		return badResults(fmt.Errorf("CANDIDATE: %w", err))
	}
	c := reports.Compare(args[0], base, args[1], cand, rules, o.seed)
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
