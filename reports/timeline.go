package reports

import (
	"cmp"
	"fmt"
	"html"
	"math"
	"slices"

	"github.com/meshbench/meshbench/runner/results"
)

// timelineCharts draw, for a run with faults, each (mesh, mode)'s first
// trial second by second (p99 and errors per second, from the load
// client's series; the proxies' CPU and memory, from the platform's
// samples) with the faults' windows shaded: where each fault's effect
// shows, what it costs the data plane, and when it ends. Trials of a run
// meet the same faults.
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
	count := func(v float64) string { return fmt.Sprintf("%g", v) }
	for _, m := range []struct {
		id, title, unit string
		points          func(*results.Trial) []timePoint
		tick            func(float64) string
		// optional: a chart drawn only when a row has points
		optional bool
	}{
		{"timeline-p99", "p99 second by second (trial 1; shaded: faults in force)", "p99",
			loadPoints(func(s results.Second) float64 { return s.P99Ms }), msTick, false},
		{"timeline-errors", "Failed requests second by second (trial 1; shaded: faults in force)", "errors",
			loadPoints(func(s results.Second) float64 { return float64(s.Errors) }), count, false},
		{"timeline-proxy-cpu", "The proxies' CPU second by second, summed (trial 1; shaded: faults in force)", "millicores",
			proxyPoints(func(u results.UsageSecond) float64 { return u.CPUMillicores }), count, true},
		{"timeline-proxy-memory", "The proxies' memory second by second, summed (trial 1; shaded: faults in force)", "MiB",
			proxyPoints(func(u results.UsageSecond) float64 { return u.MemoryMB }), count, true},
	} {
		end, top := 1.0, 0.0
		points := make([][]timePoint, len(trials))
		for i, t := range trials {
			points[i] = m.points(t)
			for _, p := range points[i] {
				end, top = math.Max(end, p.start+1), math.Max(top, p.v)
			}
		}
		if top == 0 {
			if m.optional {
				continue // no row has a proxy measured second by second
			}
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
		for i := range trials {
			if len(points[i]) == 0 {
				continue // a row without proxies
			}
			var px, py []float64
			for _, p := range points[i] {
				px, py = append(px, p.start+0.5), append(py, p.v)
			}
			name := names[i]
			c.polyline(i, name, px, py, xs, ys, func(k int) string {
				return fmt.Sprintf("%s, second %g: %s%s", name, px[k]-0.5, m.tick(py[k]), points[i][k].note)
			})
		}
		c.legend(names)
		out = append(out, c.svg())
	}
	return out
}

// timePoint is a row's value in one second of the window.
type timePoint struct {
	start, v float64
	note     string
}

// loadPoints are a figure of the load client's seconds.
func loadPoints(get func(results.Second) float64) func(*results.Trial) []timePoint {
	return func(t *results.Trial) []timePoint {
		out := make([]timePoint, len(t.Series))
		for k, s := range t.Series {
			out[k] = timePoint{start: s.Start, v: get(s), note: fmt.Sprintf(" (%d requests sent)", s.Requests)}
		}
		return out
	}
}

// proxyPoints are a figure of the row's proxies, summed second by second
// (a row without proxies has none).
func proxyPoints(get func(results.UsageSecond) float64) func(*results.Trial) []timePoint {
	return func(t *results.Trial) []timePoint {
		sum := map[float64]float64{}
		n := map[float64]int{}
		for _, u := range t.Components {
			if u.Class != results.ClassProxy {
				continue
			}
			for _, s := range u.Seconds {
				sum[s.Start] += get(s)
				n[s.Start]++
			}
		}
		out := make([]timePoint, 0, len(sum))
		for start, v := range sum {
			out = append(out, timePoint{start: start, v: v, note: fmt.Sprintf(" (%d proxies)", n[start])})
		}
		slices.SortFunc(out, func(a, b timePoint) int { return cmp.Compare(a.start, b.start) })
		return out
	}
}
