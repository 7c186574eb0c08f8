package reports

import (
	"fmt"
	"html"
	"math"

	"github.com/meshbench/meshbench/runner/results"
)

// timelineCharts draw, for a run with faults, each (mesh, mode)'s first
// trial second by second (p99 and errors per second, from the load
// client's series) with the faults' windows shaded: where each fault's
// effect shows, and when it ends. Trials of a run meet the same faults.
func (r *Report) timelineCharts() []string {
	var trials []*results.Trial
	var names []string
	for _, t := range r.trials {
		if t.Trial == 1 && t.Probe == nil && len(t.Series) > 0 && len(t.Faults) > 0 {
			trials = append(trials, t)
			names = append(names, t.Key())
		}
	}
	if len(trials) == 0 {
		return nil
	}
	var out []string
	for _, m := range []struct {
		id, title, unit string
		get             func(results.Second) float64
		tick            func(float64) string
	}{
		{"timeline-p99", "p99 second by second (trial 1; shaded: faults in force)", "p99", func(s results.Second) float64 { return s.P99Ms }, msTick},
		{"timeline-errors", "Failed requests second by second (trial 1; shaded: faults in force)", "errors", func(s results.Second) float64 { return float64(s.Errors) },
			func(v float64) string { return fmt.Sprintf("%g", v) }},
	} {
		end, top := 1.0, 0.0
		for _, t := range trials {
			for _, s := range t.Series {
				end, top = math.Max(end, s.Start+1), math.Max(top, m.get(s))
			}
		}
		if top == 0 {
			top = 1
		}
		c := newChart(m.id, m.title, "seconds into the measured window", m.unit, 860, 360)
		c.withLegend(names)
		x0, x1 := c.plotX()
		y0, y1 := c.plotY()
		xs := scale{min: 0, max: end, px0: x0, px1: x1}
		ys := scale{min: 0, max: top * 1.1, px0: y0, px1: y1}
		// The first trial's faults (each trial's start within
		// milliseconds of the others').
		for _, f := range trials[0].Faults {
			fe := math.Max(f.End, f.Start+0.05) // a one-shot action: a line
			c.printf(`<rect class="fault" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#f4a3a3" fill-opacity="0.35"><title>%s: %s on %v, %.1f-%.1fs by %s</title></rect>`,
				xs.pos(f.Start), y1, math.Max(xs.pos(math.Min(fe, end))-xs.pos(f.Start), 1), y0-y1,
				html.EscapeString(f.Name), html.EscapeString(f.Action), html.EscapeString(fmt.Sprint(f.Targets)), f.Start, f.End, html.EscapeString(f.Executor))
		}
		c.axes(xs, ys, niceTicks(0, end, 10), niceTicks(0, top*1.1, 6), func(v float64) string { return fmt.Sprintf("%g", v) }, m.tick)
		for i, t := range trials {
			var px, py []float64
			for _, s := range t.Series {
				px, py = append(px, s.Start+0.5), append(py, m.get(s))
			}
			name := names[i]
			c.polyline(i, name, px, py, xs, ys, func(k int) string {
				return fmt.Sprintf("%s, second %g: %s (%d requests sent)", name, px[k]-0.5, m.tick(py[k]), t.Series[k].Requests)
			})
		}
		c.legend(names)
		out = append(out, c.svg())
	}
	return out
}
