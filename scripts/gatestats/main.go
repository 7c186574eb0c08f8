// Command gatestats measures how `meshbench compare --gate` behaves on
// real runs: its false-alarm rate on A/A pairs (two runs of the same
// configuration) and its power on A/B pairs (B carries a known
// regression). scripts/gate-validity.sh makes the runs and calls it.
//
// Usage: gatestats -gate RULES -row KEY DIR
//
// DIR holds results directories named a-N (the configuration as is) and
// b-N (with the regression). Every ordered pair of a-runs is an A/A
// comparison (both ways round: a rule fails on one direction only, so each
// run must be the base once and the candidate once); every (a, b) pair an
// A/B comparison. It prints, for each, how often the
// whole gate and the rules on -row failed, passed or were inconclusive,
// and the regression's realized size on -row (median B/A ratio of p99).
//
// With -scale 1.1,1.2,... it also estimates the power of the gate's rule
// on -scale-metric (p99, p50 or cpu) from the A runs alone: for every
// ordered pair of A runs, the second run's metric on -row is raised by
// factor-1 times its median (a constant added to every trial, as an added
// delay or a CPU burn does: a regression of exactly that size on top of
// real run-to-run noise, which it leaves as it was) and the gate's rule
// on that metric applied; the share of failures is the power at that
// size.
//
// With -history it also measures what a history of runs gives (meshbench
// compare --history and meshbench history) on the A runs taken as a
// series in run order: the row's run-to-run spread of p99, p50 and cpu;
// compare --history's verdicts when each A run in turn is the candidate
// against all the others (A/A), and when that candidate is raised by each
// -scale factor on -scale-metric; and how often the change-point search
// finds a step of each -scale factor halfway through a series of 20 runs
// drawn (seeded, with replacement) from the A runs' values, and how often
// it finds one in such a series with no step.
//
// With -paired, on A runs made with run --candidate-binary (the same
// build as candidate), it measures whether pairing the two builds' rows
// by trial narrows the intervals: each metric's interval width paired
// against unpaired on the same rows, and the verdicts both ways.
//
// gatestats -delay-for RUN prints the service time to add to the server
// so that -row's p99 rises by 10% (a tenth of the row's median p99 in
// RUN): a constant added to every request adds itself to every percentile.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/meshbench/meshbench/reports"
	"github.com/meshbench/meshbench/runner/results"
)

func main() {
	gate := flag.String("gate", reports.DefaultGate, "gate rules")
	row := flag.String("row", "meshbench/sidecar@1000", "row whose rule verdicts are counted for power")
	metric := flag.String("metric", "p99", "metric whose realized regression is reported")
	scales := flag.String("scale", "", "comma-separated factors (e.g. 1.1,1.2) to estimate the power of the rule on -scale-metric at, from the A runs")
	scaleMetric := flag.String("scale-metric", "p99", "the metrics -scale raises, each in turn: p99, p50, cpu (comma-separated)")
	delayFor := flag.String("delay-for", "", "print the service time that raises -row's p99 in this results directory by 10%, and exit")
	history := flag.Bool("history", false, "also measure compare --history and the change-point search on the A runs as a series")
	paired := flag.Bool("paired", false, "also measure compare --paired against unpaired on the A runs' candidate rows")
	flag.Parse()
	if *delayFor != "" {
		d, err := tenPercentDelay(*delayFor, *row)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(d)
		return
	}
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: gatestats [-gate RULES] [-row KEY] DIR")
		os.Exit(2)
	}
	rules, err := reports.ParseGate(*gate)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	dir := flag.Arg(0)
	a, b := load(dir, "a-*"), load(dir, "b-*")
	if len(a) < 2 {
		fmt.Fprintln(os.Stderr, "need at least two a-N runs")
		os.Exit(2)
	}
	fmt.Printf("gate %q, %d A runs, %d B runs\n\n", *gate, len(a), len(b))
	var aa, ab tally
	for i := range a {
		for j := range a {
			if j != i {
				aa.add(reports.Compare("a", a[i], "a'", a[j], rules, reports.DefaultSeed), *row, *metric)
			}
		}
		for j := range b {
			ab.add(reports.Compare("a", a[i], "b", b[j], rules, reports.DefaultSeed), *row, *metric)
		}
	}
	aa.print("A/A (no change)")
	if len(b) > 0 {
		ab.print("A/B (regression injected)")
	}
	if *scales != "" {
		for _, metric := range strings.Split(*scaleMetric, ",") {
			if err := scaledPower(a, rules, *row, strings.TrimSpace(metric), *scales); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
		}
	}
	if *history {
		if err := historyStats(a, rules, *row, *scaleMetric, *scales); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	if *paired {
		if err := pairedStats(a, rules, *row, *scaleMetric); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
}

// tenPercentDelay is a tenth of row's median p99 in the run at dir,
// rounded to the microsecond.
func tenPercentDelay(dir, row string) (time.Duration, error) {
	trials, err := results.ReadTrials(dir)
	if err != nil {
		return 0, err
	}
	var p99 []float64
	for _, t := range trials {
		if t.RateKey() == row && t.Probe == nil {
			p99 = append(p99, t.LatencyMs.P99)
		}
	}
	if len(p99) == 0 {
		return 0, fmt.Errorf("%s: no trial of row %s", dir, row)
	}
	return (time.Duration(reports.Median(p99) * 0.1 * float64(time.Millisecond))).Round(time.Microsecond), nil
}

// scaledPower prints, for each factor, how often the gate's rule on
// metric fails on row when one A run's values of it on row are raised so
// that their median grows by that factor (scaled) and compared with
// another A run (every ordered pair).
func scaledPower(a [][]*results.Trial, rules []reports.Rule, row, metric, spec string) error {
	if _, ok := scalers[metric]; !ok {
		return fmt.Errorf("-scale-metric: %q is not one of p99, p50, cpu", metric)
	}
	var gated []reports.Rule
	for _, r := range rules {
		if r.Metric == metric {
			gated = append(gated, r)
		}
	}
	if len(gated) == 0 {
		fmt.Printf("(the gate has no %s rule: no power to estimate)\n", metric)
		return nil
	}
	if len(a) < 2 {
		return fmt.Errorf("-scale: needs two A runs or more")
	}
	fmt.Printf("Synthetic A/B from the A runs (%s on %s raised by a known constant, real noise): %d ordered pairs\n", metric, row, len(a)*(len(a)-1))
	for _, f := range strings.Split(spec, ",") {
		factor, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || factor <= 0 {
			return fmt.Errorf("-scale: %q is not a positive factor", f)
		}
		var t tally
		for i := range a {
			for j := range a {
				if i == j {
					continue
				}
				t.add(reports.Compare("a", a[i], "a*", scaled(a[j], row, metric, factor), gated, reports.DefaultSeed), row, metric)
			}
		}
		o := t.rules[gated[0].Text]
		if o == nil {
			return fmt.Errorf("-scale: no verdict of %s on row %s: is the row in the runs?", gated[0].Text, row)
		}
		fmt.Printf("  %s x%.2f: %s fails %5.1f%%  inconclusive %5.1f%%  passes %5.1f%%\n", metric, factor, gated[0].Text,
			100*float64(o[reports.Fail])/float64(t.n), 100*float64(o[reports.Inconclusive])/float64(t.n), 100*float64(o[reports.Pass])/float64(t.n))
	}
	return nil
}

// scalers read and shift a trial's metric in place (on a copy).
var scalers = map[string]struct {
	get   func(*results.Trial) float64
	shift func(*results.Trial, float64)
}{
	"p99": {func(t *results.Trial) float64 { return t.LatencyMs.P99 }, func(t *results.Trial, d float64) { t.LatencyMs.P99 += d }},
	"p50": {func(t *results.Trial) float64 { return t.LatencyMs.P50 }, func(t *results.Trial, d float64) { t.LatencyMs.P50 += d }},
	"cpu": {sutCPU, func(t *results.Trial, d float64) {
		// Spread over the system under test's components in proportion,
		// so that their sum (the cpu metric) rises by d.
		sum := sutCPU(t)
		if sum <= 0 {
			return
		}
		t.Components = append([]results.Usage(nil), t.Components...)
		for i, u := range t.Components {
			if u.Class != "" && u.Class != results.ClassLoadGen {
				t.Components[i].CPUMillicores = u.CPUMillicores * (sum + d) / sum
			}
		}
	}},
}

// sutCPU is the cpu metric of a trial (the system under test's CPU).
func sutCPU(t *results.Trial) float64 {
	m, _ := reports.MetricByName("cpu")
	v, _ := m.Value(t, nil)
	return v
}

// scaled copies trials, with (factor-1) times the median of row's metric
// added to each of row's values: the median rises by that factor, the
// spread stays.
func scaled(trials []*results.Trial, row, metric string, factor float64) []*results.Trial {
	sc := scalers[metric]
	var vals []float64
	for _, t := range trials {
		if t.RateKey() == row {
			vals = append(vals, sc.get(t))
		}
	}
	shift := (factor - 1) * reports.Median(vals)
	out := make([]*results.Trial, len(trials))
	for i, t := range trials {
		if t.RateKey() == row {
			c := *t
			sc.shift(&c, shift)
			t = &c
		}
		out[i] = t
	}
	return out
}

func load(dir, pattern string) [][]*results.Trial {
	paths, _ := filepath.Glob(filepath.Join(dir, pattern))
	// In run order: a-2 before a-10.
	sort.Slice(paths, func(i, j int) bool {
		if len(paths[i]) != len(paths[j]) {
			return len(paths[i]) < len(paths[j])
		}
		return paths[i] < paths[j]
	})
	var out [][]*results.Trial
	for _, p := range paths {
		if st, err := os.Stat(p); err != nil || !st.IsDir() {
			continue // the runs' logs
		}
		trials, err := results.ReadTrials(p)
		if err != nil || len(trials) == 0 {
			fmt.Fprintf(os.Stderr, "skipping %s: %v (%d trials)\n", p, err, len(trials))
			continue
		}
		out = append(out, trials)
	}
	return out
}

type tally struct {
	n         int
	gate      map[reports.Outcome]int
	rules     map[string]map[reports.Outcome]int
	ruleOrder []string
	ratios    []float64
}

func (t *tally) add(c *reports.Comparison, row, metric string) {
	if t.gate == nil {
		t.gate, t.rules = map[reports.Outcome]int{}, map[string]map[reports.Outcome]int{}
	}
	t.n++
	t.gate[c.Outcome]++
	for _, r := range c.Rows {
		if r.Key != row {
			continue
		}
		for _, v := range r.Verdicts {
			if t.rules[v.Rule] == nil {
				t.rules[v.Rule] = map[reports.Outcome]int{}
				t.ruleOrder = append(t.ruleOrder, v.Rule)
			}
			t.rules[v.Rule][v.Outcome]++
		}
		for _, ch := range r.Changes {
			if ch.Metric == metric {
				t.ratios = append(t.ratios, ch.Ratio.Value)
			}
		}
	}
}

func (t *tally) print(title string) {
	pct := func(k int) string { return fmt.Sprintf("%5.1f%%", 100*float64(k)/float64(t.n)) }
	fmt.Printf("%s: %d comparisons\n", title, t.n)
	fmt.Printf("  whole gate:       fail %s  inconclusive %s  pass %s\n", pct(t.gate[reports.Fail]), pct(t.gate[reports.Inconclusive]), pct(t.gate[reports.Pass]))
	for _, rule := range t.ruleOrder {
		o := t.rules[rule]
		fmt.Printf("  row rule %-9s fail %s  inconclusive %s  pass %s\n", rule, pct(o[reports.Fail]), pct(o[reports.Inconclusive]), pct(o[reports.Pass]))
	}
	if len(t.ratios) > 0 {
		fmt.Printf("  row's estimated ratio (candidate/base): median x%.3f, range [x%.3f, x%.3f]\n",
			reports.Median(t.ratios), minOf(t.ratios), maxOf(t.ratios))
	}
	fmt.Println()
}

// printRule prints the verdicts of the tally's rule on metric.
func (t *tally) printRule(metric string) {
	for _, rule := range t.ruleOrder {
		if !strings.HasPrefix(rule, metric+":") {
			continue
		}
		o := t.rules[rule]
		pct := func(k int) string { return fmt.Sprintf("%5.1f%%", 100*float64(k)/float64(t.n)) }
		fmt.Printf("%s fails %s  inconclusive %s  passes %s\n", rule, pct(o[reports.Fail]), pct(o[reports.Inconclusive]), pct(o[reports.Pass]))
		return
	}
	fmt.Printf("(no %s rule)\n", metric)
}

func minOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = min(m, x)
	}
	return m
}

func maxOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = max(m, x)
	}
	return m
}
