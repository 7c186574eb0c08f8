// Command gatestats measures how `meshbench compare --gate` behaves on
// real runs: its false-alarm rate on A/A pairs (two runs of the same
// configuration) and its power on A/B pairs (B carries a known
// regression). scripts/gate-validity.sh makes the runs and calls it.
//
// Usage: gatestats -gate RULES -row KEY DIR
//
// DIR holds results directories named a-N (the configuration as is) and
// b-N (with the regression). Every pair of a-runs is an A/A comparison;
// every (a, b) pair an A/B comparison. It prints, for each, how often the
// whole gate and the rules on -row failed, passed or were inconclusive,
// and the regression's realized size on -row (median B/A ratio of p99).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/meshbench/meshbench/reports"
	"github.com/meshbench/meshbench/runner/results"
)

func main() {
	gate := flag.String("gate", reports.DefaultGate, "gate rules")
	row := flag.String("row", "meshbench/sidecar@1000", "row whose rule verdicts are counted for power")
	metric := flag.String("metric", "p99", "metric whose realized regression is reported")
	flag.Parse()
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
		for j := i + 1; j < len(a); j++ {
			aa.add(reports.Compare("a", a[i], "a'", a[j], rules, reports.DefaultSeed), *row, *metric)
		}
		for j := range b {
			ab.add(reports.Compare("a", a[i], "b", b[j], rules, reports.DefaultSeed), *row, *metric)
		}
	}
	aa.print("A/A (no change)")
	if len(b) > 0 {
		ab.print("A/B (regression injected)")
	}
}

func load(dir, pattern string) [][]*results.Trial {
	paths, _ := filepath.Glob(filepath.Join(dir, pattern))
	sort.Strings(paths)
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
