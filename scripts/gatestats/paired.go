package main

import (
	"fmt"
	"math"
	"strings"

	"github.com/meshbench/meshbench/reports"
	"github.com/meshbench/meshbench/runner/results"
)

// pairedStats measures, on runs made with run --candidate-binary, whether
// pairing narrows the intervals: per run, the candidate rows compared with
// their base rows paired (compare --paired) and unpaired (as if two runs),
// the width of each metric's interval both ways, and the gate's verdicts
// both ways (A/A when the candidate is the same build, as gate-validity.sh
// is told to run it).
func pairedStats(a [][]*results.Trial, rules []reports.Rule, row, metricList string) error {
	metrics := strings.Split(metricList, ",")
	var paired, unpaired tally
	widths := map[string][][2]float64{}
	runs := 0
	for _, trials := range a {
		pc, ok := reports.ComparePaired("run", trials, rules, reports.DefaultSeed)
		if !ok {
			continue
		}
		runs++
		all, cand := reports.SplitCandidate(trials)
		var base []*results.Trial
		for _, t := range all {
			if t.Mode != reports.BaselineMode {
				base = append(base, t) // the twins only, as the paired comparison
			}
		}
		uc := reports.Compare("run", base, "run", cand, rules, reports.DefaultSeed)
		paired.add(pc, row, "p99")
		unpaired.add(uc, row, "p99")
		for _, m := range metrics {
			m = strings.TrimSpace(m)
			pw, ok1 := logWidth(pc, row, m)
			uw, ok2 := logWidth(uc, row, m)
			if ok1 && ok2 {
				widths[m] = append(widths[m], [2]float64{pw, uw})
			}
		}
	}
	if runs == 0 {
		fmt.Println("(no run has candidate rows: nothing paired to measure)")
		return nil
	}
	fmt.Printf("Paired (run --candidate-binary, the same build): %d runs, row %s\n", runs, row)
	for _, m := range metrics {
		m = strings.TrimSpace(m)
		ws := widths[m]
		if len(ws) == 0 {
			continue
		}
		var ratios []float64
		for _, w := range ws {
			if w[1] > 0 {
				ratios = append(ratios, w[0]/w[1])
			}
		}
		if len(ratios) == 0 {
			continue
		}
		fmt.Printf("  %-4s interval width paired/unpaired: median x%.2f, range [x%.2f, x%.2f] over %d runs\n",
			m, reports.Median(ratios), minOf(ratios), maxOf(ratios), len(ratios))
	}
	paired.print("  paired verdicts (A/A)")
	unpaired.print("  unpaired verdicts on the same rows (A/A)")
	return nil
}

// logWidth is the log of High/Low of the row's interval of metric.
func logWidth(c *reports.Comparison, row, metric string) (float64, bool) {
	for _, r := range c.Rows {
		if r.Key != row {
			continue
		}
		for _, ch := range r.Changes {
			if ch.Metric == metric && ch.Ratio.Low > 0 && !math.IsNaN(ch.Ratio.High) {
				return math.Log(ch.Ratio.High / ch.Ratio.Low), true
			}
		}
	}
	return 0, false
}
