package reports

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// A small SVG chart kit for the HTML report: everything is drawn from the
// data here, in Go, so the report needs no script or network to show it.

// palette is colour-blind-safe (Okabe-Ito) plus two greys.
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#777777", "#C9B400", "#BBBBBB"}

func colour(i int) string { return palette[i%len(palette)] }

// scale maps data values to pixels, linearly or in log10.
type scale struct {
	min, max float64
	px0, px1 float64
	log      bool
}

func (s scale) pos(v float64) float64 {
	lo, hi, x := s.min, s.max, v
	if s.log {
		lo, hi, x = math.Log10(lo), math.Log10(hi), math.Log10(math.Max(v, s.min))
	}
	if hi == lo {
		return (s.px0 + s.px1) / 2
	}
	return s.px0 + (x-lo)/(hi-lo)*(s.px1-s.px0)
}

// niceTicks returns about n round tick values covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	if hi <= lo {
		hi = lo + 1
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		out = append(out, math.Round(v/step)*step)
	}
	return out
}

// chart is one SVG figure with a plot area and axes.
type chart struct {
	b             strings.Builder
	w, h          float64
	left, right   float64
	top, bottom   float64
	title, xLabel string
	yLabel        string
	id            string
}

func newChart(id, title, xLabel, yLabel string, w, h float64) *chart {
	return &chart{id: id, title: title, xLabel: xLabel, yLabel: yLabel, w: w, h: h, left: 70, right: 20, top: 36, bottom: 50}
}

func (c *chart) plotX() (float64, float64) { return c.left, c.w - c.right }
func (c *chart) plotY() (float64, float64) { return c.h - c.bottom, c.top }

func (c *chart) printf(format string, args ...any) { fmt.Fprintf(&c.b, format, args...) }

// axes draws the frame, the ticks and the labels.
func (c *chart) axes(x, y scale, xTicks, yTicks []float64, xFmt, yFmt func(float64) string) {
	x0, x1 := c.plotX()
	y0, y1 := c.plotY()
	c.printf(`<rect class="frame" x="%.1f" y="%.1f" width="%.1f" height="%.1f"/>`, x0, y1, x1-x0, y0-y1)
	for _, t := range xTicks {
		px := x.pos(t)
		c.printf(`<line class="grid" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/><text class="tick" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`,
			px, y0, px, y1, px, y0+16, html.EscapeString(xFmt(t)))
	}
	for _, t := range yTicks {
		py := y.pos(t)
		c.printf(`<line class="grid" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/><text class="tick" x="%.1f" y="%.1f" text-anchor="end">%s</text>`,
			x0, py, x1, py, x0-6, py+4, html.EscapeString(yFmt(t)))
	}
	c.printf(`<text class="label" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, (x0+x1)/2, c.h-12, html.EscapeString(c.xLabel))
	c.printf(`<text class="label" transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">%s</text>`, (y0+y1)/2, html.EscapeString(c.yLabel))
}

// legendRows is how many lines a legend of names takes in a chart of
// width w.
func legendRows(names []string, w, left float64) int {
	rows, x := 1, left
	for _, n := range names {
		step := 24 + 7*float64(len(n))
		if x+step > w-10 && x > left {
			rows, x = rows+1, left
		}
		x += step
	}
	return rows
}

// withLegend makes room above the plot for a legend of names.
func (c *chart) withLegend(names []string) *chart {
	rows := legendRows(names, c.w, c.left)
	c.top += 16 * float64(rows-1)
	c.h += 16 * float64(rows-1)
	return c
}

// legend writes series names above the plot, wrapping into rows.
func (c *chart) legend(names []string) {
	rows := legendRows(names, c.w, c.left)
	x, y := c.left, c.top-10-16*float64(rows)
	for i, n := range names {
		step := 24 + 7*float64(len(n))
		if x+step > c.w-10 && x > c.left {
			x, y = c.left, y+16
		}
		c.printf(`<g class="legend"><rect x="%.1f" y="%.1f" width="10" height="10" fill="%s"/><text x="%.1f" y="%.1f">%s</text></g>`,
			x, y, colour(i), x+14, y+9, html.EscapeString(n))
		x += step
	}
}

// polyline draws a series; each point carries a tooltip.
func (c *chart) polyline(series int, name string, xs, ys []float64, x, y scale, tip func(i int) string) {
	var pts []string
	for i := range xs {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x.pos(xs[i]), y.pos(ys[i])))
	}
	c.printf(`<polyline class="series" data-series="%s" fill="none" stroke="%s" stroke-width="2" points="%s"/>`,
		html.EscapeString(name), colour(series), strings.Join(pts, " "))
	for i := range xs {
		c.printf(`<circle class="point" cx="%.1f" cy="%.1f" r="2.5" fill="%s"><title>%s</title></circle>`,
			x.pos(xs[i]), y.pos(ys[i]), colour(series), html.EscapeString(tip(i)))
	}
}

func (c *chart) svg() string {
	return fmt.Sprintf(`<figure class="chart" id="%s"><figcaption>%s</figcaption><svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="%s" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f">%s</svg></figure>`,
		html.EscapeString(c.id), html.EscapeString(c.title), html.EscapeString(c.title), c.w, c.h, c.w, c.h, c.b.String())
}

// percentileAxis maps a percentile to log10(1/(1-p)), as HDR histogram
// plots do, so that 90, 99, 99.9 and 99.99 are evenly spaced.
func percentileAxis(p float64) float64 { return math.Log10(1 / (1 - math.Min(p, 99.9999)/100)) }

func percentileLabel(v float64) string {
	p := 100 * (1 - math.Pow(10, -v))
	switch {
	case v == 0:
		return "0%"
	case p >= 99.99:
		return fmt.Sprintf("%.2f%%", p)
	case p >= 99.9:
		return fmt.Sprintf("%.1f%%", p)
	}
	return fmt.Sprintf("%.0f%%", p)
}

// msTick formats a latency tick in milliseconds.
func msTick(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 0:
		return "-" + msTick(-v)
	case v < 1:
		return fmt.Sprintf("%.0fµs", v*1000)
	}
	return fmt.Sprintf("%gms", math.Round(v*100)/100)
}
