package reports

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// HistoryReport is `meshbench history`: every series of a results index
// with its change points.
type HistoryReport struct {
	Dir     string        `json:"dir"`
	Runs    int           `json:"runs"`
	From    time.Time     `json:"from"`
	To      time.Time     `json:"to"`
	Options ChangeOptions `json:"options"`
	Series  []*Series     `json:"series"`
}

// NewHistoryReport finds the change points of every series of runs
// (oldest first).
func NewHistoryReport(dir string, runs []HistoryRun, metrics []Metric, o ChangeOptions) *HistoryReport {
	h := &HistoryReport{Dir: dir, Runs: len(runs), Options: o, Series: HistorySeries(runs, metrics, o)}
	if len(runs) > 0 {
		h.From, h.To = runs[0].Start.UTC(), runs[len(runs)-1].Start.UTC()
	}
	return h
}

// Regressed are the series whose latest change point is a regression:
// they stand at a worse level than before it.
func (h *HistoryReport) Regressed() []*Series {
	var out []*Series
	for _, s := range h.Series {
		if n := len(s.Changes); n > 0 && s.Changes[n-1].Regression {
			out = append(out, s)
		}
	}
	return out
}

func (h *HistoryReport) changes() (all, regressions int) {
	for _, s := range h.Series {
		for _, c := range s.Changes {
			all++
			if c.Regression {
				regressions++
			}
		}
	}
	return all, regressions
}

func (h *HistoryReport) heading() string {
	return fmt.Sprintf("history of %s: %d runs, %s to %s", h.Dir, h.Runs, h.From.Format("2006-01-02 15:04"), h.To.Format("2006-01-02 15:04"))
}

func (h *HistoryReport) summary() string {
	all, reg := h.changes()
	return fmt.Sprintf("%d series, %d change points (%d regressions); %d series stand at a regressed level.", len(h.Series), all, reg, len(h.Regressed()))
}

func (h *HistoryReport) method() string {
	return fmt.Sprintf("A series is a (scenario, mesh/mode@rate, metric) over the published runs, each run's value its median over trials.\n"+
		"A change point is the first run of a new level: binary segmentation on the logarithms of the values, each split the one\n"+
		"with the largest t statistic, kept when a permutation test (%d shuffles, seed %d) puts it below p %g, and every level\n"+
		"at least %d runs long. BEFORE and AFTER are the geometric means of the levels on either side.",
		h.Options.Permutations, h.Options.Seed, h.Options.Alpha, h.Options.MinSegment)
}

// changeRow is one change point as the tables print it.
func (s *Series) changeRow(c ChangePoint) []string {
	m, _ := MetricByName(s.Metric)
	verdict := "improvement"
	if c.Regression {
		verdict = "REGRESSION"
	}
	return []string{s.Scenario, s.Key, s.Metric, fmt.Sprint(len(s.Points)), c.RunID, c.Start.Format("2006-01-02 15:04"),
		m.Format(c.Before), m.Format(c.After), changeText(c.Ratio), fmt.Sprintf("%.3f", c.P), verdict}
}

var historyColumns = []string{"SCENARIO", "MESH/MODE@RATE", "METRIC", "RUNS", "FROM RUN", "DATE (UTC)", "BEFORE", "AFTER", "CHANGE", "P", ""}

// WriteText writes the change points as a terminal table.
func (h *HistoryReport) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "%s\n\n", h.heading())
	all, _ := h.changes()
	if all > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(historyColumns, "\t"))
		for _, s := range h.Series {
			for _, c := range s.Changes {
				fmt.Fprintln(tw, strings.Join(s.changeRow(c), "\t"))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	_, err := fmt.Fprintf(w, "%s\n%s\n", h.summary(), h.method())
	return err
}

// WriteMarkdown writes the change points for a CI step summary.
func (h *HistoryReport) WriteMarkdown(w io.Writer) error {
	fmt.Fprintf(w, "## meshbench %s\n\n%s\n\n", h.heading(), h.summary())
	if all, _ := h.changes(); all > 0 {
		fmt.Fprintf(w, "| Scenario | Row | Metric | Runs | From run | Date (UTC) | Before | After | Change | p | |\n|---|---|---|---:|---|---|---:|---:|---:|---:|---|\n")
		for _, s := range h.Series {
			for _, c := range s.Changes {
				fmt.Fprintf(w, "| %s |\n", strings.Join(s.changeRow(c), " | "))
			}
		}
		fmt.Fprintln(w)
	}
	_, err := fmt.Fprintf(w, "%s\n", strings.ReplaceAll(h.method(), "\n", " "))
	return err
}

// WriteJSON writes every series with its points and change points.
func (h *HistoryReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(h)
}

// WriteHTML writes a page with one chart per series (series with change
// points first): the runs' values, the levels between change points, and
// a mark at each change point.
func (h *HistoryReport) WriteHTML(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>meshbench history</title><style>%s\n.level{stroke:#555;stroke-dasharray:6 4;stroke-width:1.5}.cp{stroke-width:1.5;stroke-dasharray:3 3}.cp.regression{stroke:#b00020}.cp.improvement{stroke:#0a7a32}</style></head><body>\n", htmlStyle)
	fmt.Fprintf(&b, "<h1>meshbench history</h1>\n<p class=\"meta\">%s<br>%s</p>\n", html.EscapeString(h.heading()), html.EscapeString(h.summary()))
	if all, _ := h.changes(); all > 0 {
		b.WriteString("<h2>Change points</h2>\n<div class=\"scroll\"><table><tr>")
		for _, c := range historyColumns {
			fmt.Fprintf(&b, "<th>%s</th>", html.EscapeString(c))
		}
		b.WriteString("</tr>\n")
		for _, s := range h.Series {
			for _, c := range s.Changes {
				b.WriteString("<tr>")
				for i, cell := range s.changeRow(c) {
					class := ""
					if i == len(historyColumns)-1 && c.Regression {
						class = ` class="fail"`
					}
					fmt.Fprintf(&b, "<td%s>%s</td>", class, html.EscapeString(cell))
				}
				b.WriteString("</tr>\n")
			}
		}
		b.WriteString("</table></div>\n")
	}
	b.WriteString("<h2>Series</h2>\n")
	var changed, plain []*Series
	for _, s := range h.Series {
		if len(s.Changes) > 0 {
			changed = append(changed, s)
		} else {
			plain = append(plain, s)
		}
	}
	for i, s := range append(changed, plain...) {
		b.WriteString(s.chart(i) + "\n")
	}
	fmt.Fprintf(&b, "<p class=\"note\">%s</p>\n<script>%s</script>\n</body></html>\n", html.EscapeString(h.method()), htmlScript)
	_, err := io.WriteString(w, b.String())
	return err
}

// chart draws the series against its runs, oldest on the left; seq makes
// its element id unique in the page.
func (s *Series) chart(seq int) string {
	m, _ := MetricByName(s.Metric)
	title := fmt.Sprintf("%s %s, %s (%d runs)", s.Scenario, s.Key, s.Metric, len(s.Points))
	c := newChart(fmt.Sprintf("history-%d", seq), title, "run (date, UTC)", s.Metric+" ("+m.Unit+")", 860, 300)
	n := len(s.Points)
	xs, ys := make([]float64, n), make([]float64, n)
	top := 0.0
	for i, p := range s.Points {
		xs[i], ys[i] = float64(i), p.Value
		top = math.Max(top, p.Value)
	}
	x0, x1 := c.plotX()
	y0, y1 := c.plotY()
	xsc := scale{min: 0, max: math.Max(1, float64(n-1)), px0: x0, px1: x1}
	ysc := scale{min: 0, max: math.Max(top*1.15, 1e-9), px0: y0, px1: y1}
	var ticks []float64
	step := max(1, n/8)
	for i := 0; i < n; i += step {
		ticks = append(ticks, float64(i))
	}
	c.axes(xsc, ysc, ticks, niceTicks(0, top*1.15, 5), func(v float64) string {
		i := int(v)
		if i < 0 || i >= n {
			return ""
		}
		return s.Points[i].Start.Format("01-02 15:04")
	}, m.Format)
	// The levels between change points.
	bounds := []int{0}
	for _, cp := range s.Changes {
		bounds = append(bounds, cp.Index)
	}
	bounds = append(bounds, n)
	for i := 0; i+1 < len(bounds); i++ {
		lo, hi := bounds[i], bounds[i+1]
		sum := 0.0
		for _, v := range ys[lo:hi] {
			sum += math.Log(math.Max(v, 1e-12))
		}
		level := math.Exp(sum / float64(hi-lo))
		c.printf(`<line class="level" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"><title>level %s over %d runs</title></line>`,
			xsc.pos(float64(lo)), ysc.pos(level), xsc.pos(float64(hi-1)), ysc.pos(level), html.EscapeString(m.Format(level)), hi-lo)
	}
	for _, cp := range s.Changes {
		class := "improvement"
		if cp.Regression {
			class = "regression"
		}
		px := xsc.pos(float64(cp.Index) - 0.5)
		c.printf(`<line class="cp %s" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"><title>%s from run %s: %s to %s (p %.3f)</title></line>`,
			class, px, y0, px, y1, changeText(cp.Ratio), html.EscapeString(cp.RunID), html.EscapeString(m.Format(cp.Before)), html.EscapeString(m.Format(cp.After)), cp.P)
		c.printf(`<text class="tick" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, px, y1-6, html.EscapeString(changeText(cp.Ratio)))
	}
	c.polyline(0, s.Key, xs, ys, xsc, ysc, func(i int) string {
		p := s.Points[i]
		return fmt.Sprintf("run %s, %s: %s (%d trials)", p.RunID, p.Start.Format("2006-01-02 15:04"), m.Format(p.Value), p.Trials)
	})
	return c.svg()
}
