package reports

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"fortio.org/fortio/stats"

	"github.com/meshbench/meshbench/runner/results"
)

// LoadHistograms reads the latency histogram of every trial from the
// results directory (meshbench's own, latency.json; fortio's coarser one in
// fortio.json for results written before it existed), so that the HTML
// report can draw full percentile curves; without them it draws the
// recorded percentiles only. Trials whose files are missing are skipped.
func (r *Report) LoadHistograms(dir string) {
	r.hist = map[string]*stats.HistogramData{}
	for _, g := range r.groups {
		var merged *stats.HistogramData
		for _, t := range g.Trials {
			if h := trialHistogram(filepath.Join(dir, t.Dir())); h != nil {
				merged = mergeHistograms(merged, h)
			}
		}
		if merged != nil {
			r.hist[g.Key()] = merged
		}
	}
}

// trialHistogram reads a trial directory's latency histogram, or nil.
func trialHistogram(dir string) *stats.HistogramData {
	if data, err := os.ReadFile(filepath.Join(dir, results.LatencyFile)); err == nil {
		var h stats.HistogramData
		if json.Unmarshal(data, &h) == nil && h.Count > 0 {
			return &h
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, results.FortioFile))
	if err != nil {
		return nil
	}
	var res struct{ DurationHistogram *stats.HistogramData }
	if json.Unmarshal(data, &res) != nil {
		return nil
	}
	return res.DurationHistogram
}

// mergeHistograms pools b's buckets with a's. Buckets are kept as they
// are, not matched by interval: each trial's first and last buckets are
// clipped to its own min and max, so intervals of different trials overlap
// there; valueAt handles overlapping buckets.
func mergeHistograms(a, b *stats.HistogramData) *stats.HistogramData {
	if a == nil {
		c := *b
		c.Data = append([]stats.Bucket(nil), b.Data...)
		return &c
	}
	a.Data = append(a.Data, b.Data...)
	a.Count += b.Count
	a.Min, a.Max = math.Min(a.Min, b.Min), math.Max(a.Max, b.Max)
	return a
}

// valueAt is the latency (seconds) at percentile p of pooled buckets, each
// taken as uniform over its interval: the value whose pooled cumulative
// count reaches p, found by bisection (monotonic in p by construction).
func valueAt(h *stats.HistogramData, p float64) float64 {
	target := p / 100 * float64(h.Count)
	below := func(v float64) float64 {
		n := 0.0
		for _, bk := range h.Data {
			switch {
			case v >= bk.End:
				n += float64(bk.Count)
			case v > bk.Start && bk.End > bk.Start:
				n += float64(bk.Count) * (v - bk.Start) / (bk.End - bk.Start)
			}
		}
		return n
	}
	lo, hi := h.Min, h.Max
	for range 60 {
		mid := (lo + hi) / 2
		if below(mid) < target {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// curve is a latency-by-percentile curve: x in percentileAxis units, y in
// milliseconds.
func (r *Report) curve(g *Group) (xs, ys []float64) {
	if h := r.hist[g.Key()]; h != nil && h.Count > 0 {
		// Beyond 1/N the histogram has no information.
		maxAxis := math.Min(4, math.Log10(float64(h.Count)))
		for a := 0.0; a <= maxAxis+1e-9; a += 0.1 {
			p := 100 * (1 - math.Pow(10, -a))
			xs, ys = append(xs, a), append(ys, valueAt(h, p)*1000)
		}
		return xs, ys
	}
	row := r.row(g)
	if row == nil {
		return nil, nil
	}
	l := row.LatencyMs
	for _, pv := range [][2]float64{{0, l.Min}, {50, l.P50}, {90, l.P90}, {99, l.P99}, {99.9, l.P999}} {
		xs, ys = append(xs, percentileAxis(pv[0])), append(ys, pv[1])
	}
	return xs, ys
}

func (r *Report) row(g *Group) *Row {
	for _, row := range r.Rows {
		if row.Mesh == g.Mesh && row.Mode == g.Mode && row.Rate == g.Rate {
			return row
		}
	}
	return nil
}

func (r *Report) rates() []float64 {
	var out []float64
	for _, g := range r.groups {
		if len(out) == 0 || out[len(out)-1] != g.Rate {
			out = append(out, g.Rate)
		}
	}
	return out
}

// percentileCharts draws one HDR-style chart per rate: latency against
// percentile, one curve per (mesh, mode).
func (r *Report) percentileCharts() []string {
	var out []string
	for _, rate := range r.rates() {
		c := newChart(fmt.Sprintf("percentiles-%g", rate), fmt.Sprintf("Latency by percentile at %g rps (trials merged)", rate),
			"percentile (log scale of 1/(1-p))", "latency", 860, 380)
		var names []string
		for _, g := range r.groups {
			if g.Rate == rate {
				names = append(names, g.Mesh+"/"+g.Mode)
			}
		}
		c.withLegend(names)
		names = names[:0]
		var all [][2][]float64
		ymax, xmax := 0.0, 0.0
		for _, g := range r.groups {
			if g.Rate != rate {
				continue
			}
			xs, ys := r.curve(g)
			if len(xs) == 0 {
				continue
			}
			names = append(names, g.Mesh+"/"+g.Mode)
			all = append(all, [2][]float64{xs, ys})
			for i := range xs {
				// Scale to the 99.9th percentile: the last points would
				// flatten everything else.
				if xs[i] <= 3+1e-9 {
					ymax = math.Max(ymax, ys[i])
				}
				xmax = math.Max(xmax, xs[i])
			}
		}
		if len(all) == 0 {
			continue
		}
		x0, x1 := c.plotX()
		y0, y1 := c.plotY()
		ymax *= 1.1
		xs := scale{min: 0, max: math.Max(xmax, 2), px0: x0, px1: x1}
		ys := scale{min: 0, max: ymax, px0: y0, px1: y1}
		var xt []float64
		for a := 0.0; a <= xs.max+1e-9; a++ {
			xt = append(xt, a)
		}
		c.axes(xs, ys, xt, niceTicks(0, ymax, 6), percentileLabel, msTick)
		c.printf(`<clipPath id="clip-%s"><rect x="%.1f" y="%.1f" width="%.1f" height="%.1f"/></clipPath><g clip-path="url(#clip-%s)">`,
			c.id, x0, y1, x1-x0, y0-y1, c.id)
		for i, s := range all {
			name := names[i]
			c.polyline(i, name, s[0], s[1], xs, ys, func(k int) string {
				return fmt.Sprintf("%s: %s at p%s", name, msTick(s[1][k]), strings.TrimSuffix(percentileLabel(s[0][k]), "%"))
			})
		}
		c.printf(`</g>`)
		c.legend(names)
		out = append(out, c.svg())
	}
	return out
}

// addedChart draws each mode's added p50 and p99 versus the baseline of the
// same trials, medians with their 95% bootstrap intervals.
func (r *Report) addedChart() string {
	type item struct {
		key      string
		p50, p99 Estimate
	}
	var items []item
	lo, hi := 0.0, 0.0
	for _, g := range r.Stats {
		e50, ok1 := g.Get("added-p50")
		e99, ok2 := g.Get("added-p99")
		if !ok1 || !ok2 {
			continue
		}
		items = append(items, item{g.Key, e50, e99})
		for _, e := range []Estimate{e50, e99} {
			lo, hi = math.Min(lo, nanTo(e.Median.Low, e.Median.Value)), math.Max(hi, nanTo(e.Median.High, e.Median.Value))
		}
	}
	if len(items) == 0 {
		return ""
	}
	h := 70 + 34*float64(len(items))
	c := newChart("added-latency", "Added latency versus the baseline (median over trials, 95% bootstrap interval)", "added latency", "", 860, h)
	c.left = 210
	x0, x1 := c.plotX()
	y0, y1 := c.plotY()
	xs := scale{min: lo, max: hi * 1.05, px0: x0, px1: x1}
	band := (y0 - y1) / float64(len(items))
	c.axes(xs, scale{min: 0, max: 1, px0: y0, px1: y1}, niceTicks(lo, hi*1.05, 6), nil, msTick, msTick)
	if lo < 0 {
		c.printf(`<line class="zero" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, xs.pos(0), y0, xs.pos(0), y1)
	}
	for i, it := range items {
		cy := y1 + band*(float64(i)+0.5)
		c.printf(`<text class="tick" x="%.1f" y="%.1f" text-anchor="end">%s</text>`, x0-6, cy+4, html.EscapeString(it.key))
		for s, e := range []Estimate{it.p50, it.p99} {
			y := cy - 6 + 12*float64(s)
			iv := e.Median
			c.printf(`<line class="whisker" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`,
				xs.pos(nanTo(iv.Low, iv.Value)), y, xs.pos(nanTo(iv.High, iv.Value)), y, colour(s))
			c.printf(`<circle class="point" cx="%.1f" cy="%.1f" r="4" fill="%s"><title>%s %s: %s [%s, %s], %d trials</title></circle>`,
				xs.pos(iv.Value), y, colour(s), html.EscapeString(it.key), []string{"+p50", "+p99"}[s],
				msTick(iv.Value), msTick(nanTo(iv.Low, iv.Value)), msTick(nanTo(iv.High, iv.Value)), iv.N)
		}
	}
	c.legend([]string{"+p50", "+p99"})
	return c.svg()
}

func nanTo(v, alt float64) float64 {
	if math.IsNaN(v) {
		return alt
	}
	return v
}

// usageCharts draws CPU per 1000 rps and peak memory per component class
// (apps, proxies; the load generator apart), medians over trials.
func (r *Report) usageCharts() []string {
	classes := []string{results.ClassApp, results.ClassProxy}
	type bar struct {
		key  string
		vals []float64
	}
	build := func(id, title, unit string, f func(results.Usage, *results.Trial) float64, tick func(float64) string) string {
		var bars []bar
		top := 0.0
		for _, g := range r.groups {
			b := bar{key: g.Key()}
			total := 0.0
			for _, class := range classes {
				var v []float64
				for _, t := range g.Trials {
					sum := 0.0
					for _, u := range t.Components {
						if u.Class == class {
							sum += f(u, t)
						}
					}
					v = append(v, sum)
				}
				b.vals = append(b.vals, Median(v))
				total += Median(v)
			}
			top = math.Max(top, total)
			bars = append(bars, b)
		}
		if len(bars) == 0 || top == 0 {
			return ""
		}
		c := newChart(id, title, unit, "", 860, 70+30*float64(len(bars)))
		c.left = 210
		x0, x1 := c.plotX()
		y0, y1 := c.plotY()
		xs := scale{min: 0, max: top * 1.1, px0: x0, px1: x1}
		band := (y0 - y1) / float64(len(bars))
		c.axes(xs, scale{min: 0, max: 1, px0: y0, px1: y1}, niceTicks(0, top*1.1, 6), nil, tick, tick)
		for i, b := range bars {
			y := y1 + band*float64(i) + band*0.2
			c.printf(`<text class="tick" x="%.1f" y="%.1f" text-anchor="end">%s</text>`, x0-6, y+band*0.3+4, html.EscapeString(b.key))
			acc := 0.0
			for k, v := range b.vals {
				if v <= 0 {
					continue
				}
				c.printf(`<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %s</title></rect>`,
					xs.pos(acc), y, xs.pos(acc+v)-xs.pos(acc), band*0.6, colour(k), html.EscapeString(b.key), classes[k], tick(v))
				acc += v
			}
		}
		c.legend([]string{"apps", "proxies"})
		return c.svg()
	}
	cpu := build("cpu", "CPU per 1000 rps by component (median over trials; the load generator is not shown)", "millicores per 1000 rps",
		func(u results.Usage, t *results.Trial) float64 {
			if t.Achieved <= 0 {
				return 0
			}
			return u.CPUMillicores / t.Achieved * 1000
		}, func(v float64) string { return fmt.Sprintf("%.0fm", v) })
	mem := build("memory", "Peak memory (RSS) by component (median over trials)", "MB",
		func(u results.Usage, _ *results.Trial) float64 { return u.RSSMaxMB },
		func(v float64) string { return fmt.Sprintf("%.0fMB", v) })
	var out []string
	for _, s := range []string{cpu, mem} {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// sweepCharts draws p50 and p99 against the requested rate, one line per
// (mesh, mode), when the run swept rates.
func (r *Report) sweepCharts() []string {
	rates := r.rates()
	if len(rates) < 2 {
		return nil
	}
	var out []string
	for _, pc := range []struct {
		name string
		get  func(*Row) float64
	}{{"p50", func(row *Row) float64 { return row.LatencyMs.P50 }}, {"p99", func(row *Row) float64 { return row.LatencyMs.P99 }}} {
		c := newChart("sweep-"+pc.name, "Latency ("+pc.name+") against the request rate (median over trials)", "requested rate (rps)", pc.name, 860, 380)
		series := map[string][][2]float64{}
		var names []string
		top := 0.0
		for _, row := range r.Rows {
			k := row.Mesh + "/" + row.Mode
			if _, ok := series[k]; !ok {
				names = append(names, k)
			}
			series[k] = append(series[k], [2]float64{row.Rate, pc.get(row)})
			top = math.Max(top, pc.get(row))
		}
		c.withLegend(names)
		x0, x1 := c.plotX()
		y0, y1 := c.plotY()
		xs := scale{min: rates[0], max: rates[len(rates)-1], px0: x0, px1: x1, log: rates[0] > 0}
		ys := scale{min: 0, max: top * 1.1, px0: y0, px1: y1}
		c.axes(xs, ys, rates, niceTicks(0, top*1.1, 6), func(v float64) string { return fmt.Sprintf("%g", v) }, msTick)
		for i, n := range names {
			var px, py []float64
			for _, p := range series[n] {
				px, py = append(px, p[0]), append(py, p[1])
			}
			c.polyline(i, n, px, py, xs, ys, func(k int) string { return fmt.Sprintf("%s at %g rps: %s", n, px[k], msTick(py[k])) })
		}
		c.legend(names)
		out = append(out, c.svg())
	}
	return out
}

// maxChart draws a max search's probes: p99 against the probed rate,
// filled where the probe met the SLO, hollow where it did not.
func (r *Report) maxChart(trials []*results.Trial) string {
	var probes []*results.Trial
	for _, t := range trials {
		if t.Probe != nil {
			probes = append(probes, t)
		}
	}
	if len(probes) == 0 {
		return ""
	}
	c := newChart("max-search", "Max search: p99 of every probe (filled: met the SLO)", "probed rate (rps)", "p99", 860, 380)
	lo, hi, top := math.Inf(1), 0.0, 0.0
	var names []string
	idx := map[string]int{}
	for _, t := range probes {
		lo, hi, top = math.Min(lo, t.Requested), math.Max(hi, t.Requested), math.Max(top, t.LatencyMs.P99)
		if _, ok := idx[t.Key()]; !ok {
			idx[t.Key()] = len(names)
			names = append(names, t.Key())
		}
	}
	c.withLegend(names)
	x0, x1 := c.plotX()
	y0, y1 := c.plotY()
	xs := scale{min: lo, max: math.Max(hi, lo*2), px0: x0, px1: x1, log: true}
	ys := scale{min: 0, max: top * 1.1, px0: y0, px1: y1}
	var xt []float64
	for v := math.Pow(10, math.Floor(math.Log10(lo))); v <= xs.max*1.0001; v *= 10 {
		for _, m := range []float64{1, 2, 5} {
			if t := v * m; t >= lo && t <= xs.max {
				xt = append(xt, t)
			}
		}
	}
	c.axes(xs, ys, xt, niceTicks(0, top*1.1, 6), func(v float64) string { return fmt.Sprintf("%g", v) }, msTick)
	for _, t := range probes {
		i := idx[t.Key()]
		fill := colour(i)
		if !t.Probe.Pass {
			fill = "white"
		}
		c.printf(`<circle class="point" cx="%.1f" cy="%.1f" r="4" fill="%s" stroke="%s" stroke-width="1.5"><title>%s probe %d at %g rps: p99 %s, %s</title></circle>`,
			xs.pos(t.Requested), ys.pos(t.LatencyMs.P99), fill, colour(i), html.EscapeString(t.Key()), t.Probe.Index, t.Requested,
			msTick(t.LatencyMs.P99), html.EscapeString(map[bool]string{true: "met the SLO", false: "missed: " + t.Probe.Reason}[t.Probe.Pass]))
	}
	c.legend(names)
	return c.svg()
}

const htmlStyle = `body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.meta{color:#555}table{border-collapse:collapse;margin:.6em 0;font-size:.88em}th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f4f4f4}td{white-space:nowrap}.scroll{overflow-x:auto}td:first-child,th:first-child{text-align:left}.ok{color:#0a7a32}.fail{color:#b00020;font-weight:bold}
figure.chart{margin:1.2em 0}figcaption{font-weight:600;margin-bottom:.3em}svg{max-width:100%;height:auto;font-size:12px}
.frame{fill:none;stroke:#999}.grid{stroke:#eee}.tick{fill:#444}.label{fill:#222;font-weight:600}.legend text{fill:#222}
.whisker{stroke-width:2}.zero{stroke:#999;stroke-dasharray:4 3}pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}
.note{color:#555;font-size:.9em}`

// The script only checks that the charts drew (they are complete without
// it): the HTML test reads the attribute it sets.
const htmlScript = `(function(){var figs=document.querySelectorAll("figure.chart svg"),drawn=0;
figs.forEach(function(svg){var b=svg.getBBox(),marks=svg.querySelectorAll(".series,.point,.bar").length;if(b.width>0&&b.height>0&&marks>0){drawn++;}});
document.documentElement.setAttribute("data-charts-drawn",drawn+"/"+figs.length);})();`

// WriteHTML writes the report as one self-contained HTML page: inline
// style and SVG charts, no external resource.
func (r *Report) WriteHTML(w io.Writer) error {
	var b strings.Builder
	m := r.Manifest
	title := "meshbench report"
	if m != nil && m.Scenario != nil {
		title = "meshbench: " + m.Scenario.Name
	}
	fmt.Fprintf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>%s</title><style>%s</style></head><body>\n", html.EscapeString(title), htmlStyle)
	fmt.Fprintf(&b, "<h1>%s</h1>\n", html.EscapeString(title))
	if m != nil {
		desc := ""
		if m.Scenario != nil {
			desc = m.Scenario.Description
		}
		asRun := ""
		if sc := m.Scenario; sc != nil {
			load := fmt.Sprintf("%g rps", sc.Load.QPS)
			switch {
			case sc.Load.Max != nil:
				load = "a max search from " + fmt.Sprintf("%g rps", sc.Load.Max.Start)
			case len(sc.Load.Rates) > 0:
				load = fmt.Sprintf("rates %v rps", sc.Load.Rates)
			}
			asRun = fmt.Sprintf("As run: %s, %d connections, %d trials of %s after %s of warm-up, topology %s", load, sc.Load.Connections, sc.Trials, sc.Load.Duration, sc.Load.Warmup, sc.Topology.Shape())
			if c := sc.ControlPlane; c != nil {
				asRun = fmt.Sprintf("As run: control-plane benchmark, clients %v, changes %v, %d repeats each", c.Clients, c.Changes, c.Repeats)
			}
		}
		fmt.Fprintf(&b, "<p class=\"meta\">%s<br>%s<br>Run %s, %s UTC, meshbench %s (%s)</p>\n", html.EscapeString(desc), html.EscapeString(asRun), html.EscapeString(m.RunID),
			m.StartTime.UTC().Format("2006-01-02 15:04:05"), html.EscapeString(m.Meshbench.Version), html.EscapeString(m.Meshbench.Commit))
	}
	if t := r.controlPlaneText(); t != "" {
		fmt.Fprintf(&b, "<h2>Control-plane propagation</h2>\n<pre>%s</pre>\n", html.EscapeString(t))
	}
	if len(r.Max) > 0 {
		b.WriteString("<h2>Highest rate meeting the SLO</h2>\n<table><tr><th>Mesh/mode</th><th>Trials</th><th>Max QPS</th><th>[min, max]</th><th>P99 at max</th><th>Probes</th></tr>\n")
		for _, mr := range r.Max {
			fmt.Fprintf(&b, "<tr><td>%s/%s</td><td>%d</td><td>%.0f</td><td>[%.0f, %.0f]</td><td>%s</td><td>%d</td></tr>\n",
				html.EscapeString(mr.Mesh), html.EscapeString(mr.Mode), mr.Trials, mr.Rate, mr.RateSpread[0], mr.RateSpread[1], ms(mr.P99Ms), mr.Probes)
		}
		b.WriteString("</table>\n")
		if s := r.maxChart(r.allTrials()); s != "" {
			b.WriteString(s + "\n")
		}
	}
	if len(r.Stats) > 0 {
		b.WriteString("<h2>Results</h2>\n")
		for _, cols := range [][]string{{"p50", "p90", "p99"}, {"p99.9", "added-p50", "added-p99"}, {"qps", "error-rate", "cpu", "mem"}} {
			b.WriteString("<div class=\"scroll\"><table><tr><th>Mesh/mode@rate</th><th>N</th>")
			for _, c := range cols {
				fmt.Fprintf(&b, "<th>%s</th>", html.EscapeString(c))
			}
			spreadCol := slices.Contains(cols, "p99")
			if spreadCol {
				b.WriteString("<th>p99 min–max</th>")
			}
			b.WriteString("</tr>\n")
			for _, g := range r.Stats {
				fmt.Fprintf(&b, "<tr><td>%s</td><td>%d</td>", html.EscapeString(g.Key), g.Trials)
				for _, c := range cols {
					cell := "–"
					if e, ok := g.Get(c); ok {
						cell = estimateText(e)
					}
					fmt.Fprintf(&b, "<td>%s</td>", html.EscapeString(cell))
				}
				if spreadCol {
					spread := "–"
					if e, ok := g.Get("p99"); ok {
						spread = ms(e.Min) + "–" + ms(e.Max)
					}
					fmt.Fprintf(&b, "<td>%s</td>", spread)
				}
				b.WriteString("</tr>\n")
			}
			b.WriteString("</table></div>\n")
		}
		fmt.Fprintf(&b, "<p class=\"note\">Medians over N trials, each with a 95%% percentile-bootstrap interval (%d resamples, seed %d; with 3 or fewer trials the interval is no narrower than the data). The p99 min–max column is the trial-to-trial spread of p99: the noise. Added latency is per trial against the baseline of the same trial.", DefaultResamples, r.Seed)
		if m != nil {
			for _, c := range m.Calibrations {
				fmt.Fprintf(&b, " Harness floor (fortio to the application with no mesh, before the trials) at %g rps: p50 %s, p99 %s, load generator %.1f qps.",
					c.Requested, ms(c.LatencyMs.P50), ms(c.LatencyMs.P99), c.Achieved)
			}
			for _, l := range SharedNodeLines(m, r.Rows) {
				b.WriteString(" " + html.EscapeString(l))
			}
		}
		b.WriteString("</p>\n")
	}
	if len(r.SLOs) > 0 {
		b.WriteString("<h2>Objectives</h2>\n<table><tr><th>Objective</th><th>Row</th><th>Measured</th><th>Verdict</th></tr>\n")
		for _, s := range r.SLOs {
			verdict := `<span class="fail">fail</span>`
			if s.Holds {
				verdict = `<span class="ok">ok</span>`
			}
			fmt.Fprintf(&b, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>\n", html.EscapeString(s.Objective), html.EscapeString(s.Key), html.EscapeString(s.Measured), verdict)
		}
		b.WriteString("</table>\n")
	}
	r.writeGameDaysHTML(&b)
	if charts := r.percentileCharts(); len(charts) > 0 {
		b.WriteString("<h2>Latency percentiles</h2>\n" + strings.Join(charts, "\n") + "\n")
	}
	if s := r.addedChart(); s != "" {
		b.WriteString("<h2>Added latency</h2>\n" + s + "\n")
	}
	if charts := r.usageCharts(); len(charts) > 0 {
		b.WriteString("<h2>CPU and memory</h2>\n" + strings.Join(charts, "\n") + "\n")
	}
	r.writeProfilesHTML(&b)
	if charts := r.sweepCharts(); len(charts) > 0 {
		b.WriteString("<h2>Rate sweep</h2>\n" + strings.Join(charts, "\n") + "\n")
	}
	if charts := r.timelineCharts(); len(charts) > 0 {
		b.WriteString("<h2>Faults: the window second by second</h2>\n" + strings.Join(charts, "\n") + "\n")
	}
	r.writeEnvironment(&b)
	fmt.Fprintf(&b, "<script>%s</script>\n</body></html>\n", htmlScript)
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *Report) allTrials() []*results.Trial { return r.trials }

// writeEnvironment writes where and how the run ran, and its scenario.
func (r *Report) writeEnvironment(b *strings.Builder) {
	m := r.Manifest
	if m == nil {
		return
	}
	b.WriteString("<h2>Environment</h2>\n<table>\n")
	row := func(k, v string) {
		fmt.Fprintf(b, "<tr><th>%s</th><td style=\"text-align:left\">%s</td></tr>\n", html.EscapeString(k), html.EscapeString(v))
	}
	row("Host", fmt.Sprintf("%s, %s %s, kernel %s", m.Host.Hostname, m.Host.OS, m.Host.Arch, m.Host.Kernel))
	row("CPUs and memory", fmt.Sprintf("%d × %s, %d MB", m.Host.CPUs, m.Host.CPUModel, m.Host.MemoryMB))
	row("Platform", fmt.Sprintf("%s, network %s (%s), transparent interception %v", m.Platform.Name, m.Platform.Network, m.Platform.NetworkReason, m.Platform.Transparent))
	row("Resource accounting", m.Platform.ResourceSource)
	var placement []string
	for class, cpus := range m.Platform.Placement {
		placement = append(placement, class+": "+cpus)
	}
	sort.Strings(placement)
	row("CPU placement", strings.Join(placement, ", "))
	var nodes []string
	for n, a := range m.Platform.Nodes {
		nodes = append(nodes, n+" "+a)
	}
	sort.Strings(nodes)
	row("Nodes", strings.Join(nodes, ", "))
	row("meshbench", fmt.Sprintf("%s (commit %s, %s)", m.Meshbench.Version, m.Meshbench.Commit, m.Meshbench.GoVersion))
	row("Latency histogram resolution", m.HistogramResolution)
	for _, u := range m.Unavailable {
		row("Unavailable", u.Mesh+"/"+u.Mode+": "+u.Reason)
	}
	b.WriteString("</table>\n")
	if m.Scenario != nil {
		data, _ := json.MarshalIndent(m.Scenario, "", "  ")
		fmt.Fprintf(b, "<h2>Scenario</h2>\n<pre>%s</pre>\n", html.EscapeString(string(data)))
	}
}
