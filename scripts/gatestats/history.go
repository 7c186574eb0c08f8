package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/meshbench/meshbench/reports"
	"github.com/meshbench/meshbench/runner/results"
)

// seriesLen and seriesDraws shape the change-point measurement: series
// of 20 runs (the history), 500 of them per step size.
const seriesLen, seriesDraws = 20, 500

// historyStats measures the history tools on the A runs as a series.
func historyStats(a [][]*results.Trial, rules []reports.Rule, row, metricList, scaleSpec string) error {
	if len(a) < reports.MinHistoryRuns+1 {
		return fmt.Errorf("-history: needs %d A runs or more", reports.MinHistoryRuns+1)
	}
	var factors []float64
	for _, f := range strings.Split(scaleSpec, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 {
			return fmt.Errorf("-scale: %q is not a positive factor", f)
		}
		factors = append(factors, v)
	}
	metrics := strings.Split(metricList, ",")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	runs := make([]reports.HistoryRun, len(a))
	for i, trials := range a {
		runs[i] = reports.HistoryRun{ID: fmt.Sprintf("a-%d", i+1), Start: t0.Add(time.Duration(i) * time.Hour), Scenario: "gate", Trials: trials}
	}
	fmt.Printf("History: the %d A runs as a series, row %s\n", len(a), row)
	for _, name := range metrics {
		name = strings.TrimSpace(name)
		m, ok := reports.MetricByName(name)
		if !ok {
			return fmt.Errorf("-scale-metric: unknown metric %q", name)
		}
		per := rowValues(a, row, m)
		n, ok := reports.RunNoiseOf(per)
		if !ok {
			return fmt.Errorf("-history: row %s has too few positive %s values", row, name)
		}
		fmt.Printf("  %-4s run-to-run spread %5.1f%%, within runs %5.1f%%, drift beyond the trials %5.1f%% (%.1f trials a run)\n",
			name, n.Between*100, n.Within*100, n.Drift()*100, n.Trials)
	}

	// compare --history, leave one out: every A run against the others.
	var aa tally
	for i := range a {
		aa.add(reports.CompareHistory(reports.HistoryBase{Dir: "a-runs", Scenario: "gate"}, without(runs, i), "a", a[i], rules, reports.DefaultSeed), row, "p99")
	}
	aa.print(fmt.Sprintf("compare --history, A/A (each A run against the other %d)", len(a)-1))
	for _, name := range metrics {
		name = strings.TrimSpace(name)
		if _, ok := scalers[name]; !ok {
			continue
		}
		for _, f := range factors {
			var ab tally
			for i := range a {
				ab.add(reports.CompareHistory(reports.HistoryBase{Dir: "a-runs", Scenario: "gate"}, without(runs, i), "a*", scaled(a[i], row, name, f), rules, reports.DefaultSeed), row, name)
			}
			fmt.Printf("  %s x%.2f against the history: ", name, f)
			ab.printRule(name)
		}
	}
	fmt.Println()

	// The change-point search on series drawn from the A runs.
	o := reports.DefaultChangeOptions
	fmt.Printf("meshbench history: %d series of %d runs drawn from the A runs' values, a step at run %d (found: a change point within 2 runs of it)\n",
		seriesDraws, seriesLen, seriesLen/2+1)
	for _, name := range metrics {
		name = strings.TrimSpace(name)
		m, _ := reports.MetricByName(name)
		var values []float64
		for _, vs := range rowValues(a, row, m) {
			if len(vs) > 0 {
				values = append(values, reports.Median(vs))
			}
		}
		rng := rand.New(rand.NewPCG(uint64(len(values)), 17))
		line := []string{fmt.Sprintf("no step: %.1f%% false", 100*stepFound(rng, values, 1, o, false))}
		for _, f := range factors {
			line = append(line, fmt.Sprintf("x%.2f: %.1f%%", f, 100*stepFound(rng, values, f, o, true)))
		}
		fmt.Printf("  %-4s %s\n", name, strings.Join(line, ", "))
	}
	return nil
}

// rowValues are each run's values of the metric on row.
func rowValues(a [][]*results.Trial, row string, m reports.Metric) [][]float64 {
	out := make([][]float64, len(a))
	for i, trials := range a {
		for _, g := range reports.GroupTrials(trials) {
			if g.Key() == row {
				out[i] = g.Values(m)
			}
		}
	}
	return out
}

func without(runs []reports.HistoryRun, i int) []reports.HistoryRun {
	return append(append([]reports.HistoryRun(nil), runs[:i]...), runs[i+1:]...)
}

// stepFound is the share of drawn series in which the search finds a
// change point within 2 runs of the step (or, with step false, any).
func stepFound(rng *rand.Rand, values []float64, factor float64, o reports.ChangeOptions, step bool) float64 {
	found := 0
	logs := make([]float64, seriesLen)
	for range seriesDraws {
		for i := range logs {
			v := values[rng.IntN(len(values))]
			if i >= seriesLen/2 {
				v *= factor
			}
			logs[i] = math.Log(v)
		}
		at, _ := reports.ChangePoints(logs, o)
		for _, i := range at {
			if !step || i >= seriesLen/2-2 && i <= seriesLen/2+2 {
				found++
				break
			}
		}
	}
	return float64(found) / seriesDraws
}
