package reports

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/meshbench/meshbench/runner/results"
)

// MaxRow summarizes one (mesh, mode)'s max searches across trials.
type MaxRow struct {
	Mesh   string `json:"mesh"`
	Mode   string `json:"mode"`
	Trials int    `json:"trials"`
	// Rate is the median over trials of the highest rate that met the SLO,
	// with its [min, max]; Achieved and P99Ms are the median passing
	// probe's figures.
	Rate       float64    `json:"maxQPS"`
	RateSpread [2]float64 `json:"maxQPSSpread"`
	Achieved   float64    `json:"achievedQPS"`
	P99Ms      float64    `json:"p99Ms"`
	// Probes is the total number of probes run.
	Probes int `json:"probes"`
	// Stops counts why the searches stopped.
	Stops map[string]int `json:"stops"`
}

// SummarizeMax groups a run's max searches by (mesh, mode), in order of
// first appearance.
func SummarizeMax(m *results.Manifest) []*MaxRow {
	groups := map[string][]results.MaxResult{}
	var keys []string
	for _, res := range m.Max {
		if _, ok := groups[res.Key()]; !ok {
			keys = append(keys, res.Key())
		}
		groups[res.Key()] = append(groups[res.Key()], res)
	}
	var rows []*MaxRow
	for _, k := range keys {
		rs := groups[k]
		row := &MaxRow{Mesh: rs[0].Mesh, Mode: rs[0].Mode, Trials: len(rs), Stops: map[string]int{}}
		var rates, achieved, p99 []float64
		for _, r := range rs {
			rates = append(rates, r.Rate)
			achieved = append(achieved, r.Achieved)
			p99 = append(p99, r.LatencyMs.P99)
			row.Probes += r.Probes
			row.Stops[r.Stop]++
		}
		row.Rate, row.RateSpread = Median(rates), span(rates)
		row.Achieved, row.P99Ms = Median(achieved), Median(p99)
		rows = append(rows, row)
	}
	return rows
}

func writeMax(w io.Writer, m *results.Manifest) error {
	if m.Scenario != nil && m.Scenario.Load.Max != nil {
		max := m.Scenario.Load.Max
		fmt.Fprintf(w, "Highest rate meeting the SLO (%s), searched from %g up to %g rps to within %g%%:\n",
			max.SLO, max.Start, max.Limit, max.Precision*100)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MESH\tMODE\tTRIALS\tMAX QPS\t[MIN, MAX]\tACHIEVED\tP99 AT MAX\tPROBES\tSTOPPED\t")
	for _, r := range SummarizeMax(m) {
		stops := ""
		for _, why := range []string{"converged", "limit", "probes", "none"} {
			if n := r.Stops[why]; n > 0 {
				if stops != "" {
					stops += ","
				}
				stops += fmt.Sprintf("%s×%d", why, n)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t[%.0f, %.0f]\t%.1f\t%s\t%d\t%s\t\n",
			r.Mesh, r.Mode, r.Trials, r.Rate, r.RateSpread[0], r.RateSpread[1], r.Achieved, ms(r.P99Ms), r.Probes, stops)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return nil
}
