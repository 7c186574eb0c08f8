package reports

import (
	"fmt"
	"html"
	"io"
	"strings"
	"text/tabwriter"
)

// GameDayRow is a row's game-day verdicts over its trials: how many
// passed, the median resilience score, each probe's and each fault's
// outcome.
type GameDayRow struct {
	Key    string         `json:"key"`
	Trials int            `json:"trials"`
	Passed int            `json:"passed"`
	Score  float64        `json:"score"`
	Probes []GameDayProbe `json:"probes"`
	Faults []GameDayFault `json:"faults,omitempty"`
}

// Pass is whether every trial's verdict passed.
func (g GameDayRow) Pass() bool { return g.Passed == g.Trials }

// GameDayProbe is a probe over a row's trials: in how many it failed, its
// median success percent, and the first failing trial's reason.
type GameDayProbe struct {
	Name       string  `json:"name"`
	Mode       string  `json:"mode"`
	Trials     int     `json:"trials"`
	Failed     int     `json:"failed"`
	SuccessPct float64 `json:"successPct"`
	Reason     string  `json:"reason,omitempty"`
	// NotApplicable says the probe could not judge the row (Reason says
	// why): it is not counted.
	NotApplicable bool `json:"notApplicable,omitempty"`
}

// GameDayFault is a fault over a row's trials (a Schedule's firings
// together): in how many of its actions (Trials: one per trial, or per
// firing) its effect was detected and recovered from, and the median
// times of those that were (-1: none).
type GameDayFault struct {
	Name      string  `json:"name"`
	Trials    int     `json:"trials"`
	Detected  int     `json:"detected"`
	DetectS   float64 `json:"detectS"`
	Recovered int     `json:"recovered"`
	RecoverS  float64 `json:"recoverS"`
}

// SummarizeGameDays folds the trials' verdicts per row; rows whose trials
// have none (no probes, or the calibration) are left out.
func SummarizeGameDays(groups []*Group) []GameDayRow {
	var out []GameDayRow
	for _, g := range groups {
		row := GameDayRow{Key: g.Key()}
		var scores []float64
		probes := map[string]*GameDayProbe{}
		pcts := map[string][]float64{}
		faults := map[string]*GameDayFault{}
		detect, recover := map[string][]float64{}, map[string][]float64{}
		var probeOrder, faultOrder []string
		for _, t := range g.Trials {
			v := t.Verdict
			if v == nil {
				continue
			}
			row.Trials++
			if v.Pass {
				row.Passed++
			}
			scores = append(scores, v.Score)
			for _, p := range v.Probes {
				k := p.Name + "\x00" + p.Mode
				gp := probes[k]
				if gp == nil {
					gp = &GameDayProbe{Name: p.Name, Mode: p.Mode}
					probes[k] = gp
					probeOrder = append(probeOrder, k)
				}
				gp.Trials++
				if p.NotApplicable {
					gp.NotApplicable, gp.Reason = true, p.Reason
					continue
				}
				pcts[k] = append(pcts[k], p.SuccessPct)
				if !p.Pass {
					if gp.Failed == 0 {
						gp.Reason = fmt.Sprintf("trial %d: %s", t.Trial, p.Reason)
					}
					gp.Failed++
				}
			}
			for _, f := range v.Faults {
				name := faultFamily(f.Name)
				gf := faults[name]
				if gf == nil {
					gf = &GameDayFault{Name: name}
					faults[name] = gf
					faultOrder = append(faultOrder, name)
				}
				gf.Trials++
				if f.DetectS >= 0 {
					gf.Detected++
					detect[name] = append(detect[name], f.DetectS)
				}
				if f.RecoverS >= 0 {
					gf.Recovered++
					recover[name] = append(recover[name], f.RecoverS)
				}
			}
		}
		if row.Trials == 0 {
			continue
		}
		row.Score = Median(scores)
		for _, k := range probeOrder {
			p := probes[k]
			if len(pcts[k]) > 0 {
				p.SuccessPct = Median(pcts[k])
			}
			row.Probes = append(row.Probes, *p)
		}
		orNone := func(v []float64) float64 {
			if len(v) == 0 {
				return -1
			}
			return Median(v)
		}
		for _, k := range faultOrder {
			f := faults[k]
			f.DetectS, f.RecoverS = orNone(detect[k]), orNone(recover[k])
			row.Faults = append(row.Faults, *f)
		}
		out = append(out, row)
	}
	return out
}

// faultFamily is a fault's name without a Schedule firing's suffix: the
// firings of one Schedule (Schedule/<name>/firing-<n>) are one fault of
// the game day.
func faultFamily(name string) string {
	if i := strings.LastIndex(name, "/firing-"); i > 0 && strings.HasPrefix(name, "Schedule/") && strings.Count(name, "/") == 2 {
		return name[:i]
	}
	return name
}

// verdictWord is a row's verdict: PASS, or FAIL with the failed trials.
func (g GameDayRow) verdictWord() string {
	if g.Pass() {
		return "PASS"
	}
	return fmt.Sprintf("FAIL (%d of %d trials)", g.Trials-g.Passed, g.Trials)
}

// failedProbes says which probes failed, and why the first time.
func (g GameDayRow) failedProbes() string {
	var out []string
	for _, p := range g.Probes {
		if p.Failed > 0 {
			out = append(out, fmt.Sprintf("%s (%s) failed in %d of %d: %s", p.Name, p.Mode, p.Failed, p.Trials, p.Reason))
		}
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, "; ")
}

// faultTimes says, per fault, its median times to detect and recover.
func (g GameDayRow) faultTimes() string {
	var out []string
	for _, f := range g.Faults {
		d, r := "never detected", "never recovered"
		if f.Detected > 0 {
			d = fmt.Sprintf("detected in %d/%d, %.1fs", f.Detected, f.Trials, f.DetectS)
		}
		if f.Recovered > 0 {
			r = fmt.Sprintf("recovered in %d/%d, %.1fs after", f.Recovered, f.Trials, f.RecoverS)
		}
		out = append(out, fmt.Sprintf("%s: %s, %s", f.Name, d, r))
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, "; ")
}

const gameDayNote = "Verdicts per row over its trials: PASS when every trial's probes held; the resilience score is the median of the trials' (weighted mean of the probes' success percents); detect and recover times are medians over the trials in which they happened."

// writeGameDaysText writes the game-day table.
func (r *Report) writeGameDaysText(w io.Writer) error {
	if len(r.GameDays) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nGame day:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ROW\tVERDICT\tSCORE\tFAILED PROBES\tFAULTS")
	for _, g := range r.GameDays {
		fmt.Fprintf(tw, "%s\t%s\t%.1f%%\t%s\t%s\n", g.Key, g.verdictWord(), g.Score, g.failedProbes(), g.faultTimes())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, gameDayNote)
	return err
}

// writeGameDaysMarkdown writes the game-day table in Markdown.
func (r *Report) writeGameDaysMarkdown(w io.Writer) {
	if len(r.GameDays) == 0 {
		return
	}
	fmt.Fprintf(w, "\n| Row | Game day | Score | Failed probes | Faults |\n|---|---|---:|---|---|\n")
	for _, g := range r.GameDays {
		v := "✅ pass"
		if !g.Pass() {
			v = "❌ " + strings.ToLower(g.verdictWord())
		}
		fmt.Fprintf(w, "| %s | %s | %.1f%% | %s | %s |\n", g.Key, v, g.Score, mdCell(g.failedProbes()), mdCell(g.faultTimes()))
	}
	fmt.Fprintf(w, "\n%s\n", gameDayNote)
}

// mdCell keeps a table cell on its row.
func mdCell(s string) string {
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}

// writeGameDaysHTML writes the game-day table in HTML.
func (r *Report) writeGameDaysHTML(b *strings.Builder) {
	if len(r.GameDays) == 0 {
		return
	}
	b.WriteString("<h2>Game day</h2>\n<div class=\"scroll\"><table><tr><th>Row</th><th>Verdict</th><th>Score</th><th>Failed probes</th><th>Faults</th></tr>\n")
	for _, g := range r.GameDays {
		v := `<span class="ok">pass</span>`
		if !g.Pass() {
			v = `<span class="fail">` + html.EscapeString(strings.ToLower(g.verdictWord())) + `</span>`
		}
		fmt.Fprintf(b, "<tr><td>%s</td><td>%s</td><td>%.1f%%</td><td style=\"text-align:left;white-space:normal\">%s</td><td style=\"text-align:left;white-space:normal\">%s</td></tr>\n",
			html.EscapeString(g.Key), v, g.Score, html.EscapeString(g.failedProbes()), html.EscapeString(g.faultTimes()))
	}
	fmt.Fprintf(b, "</table></div>\n<p class=\"note\">%s</p>\n", html.EscapeString(gameDayNote))
}

// addGameDaysJUnit adds one case per probe per row: it fails when the
// probe failed in a trial.
func (r *Report) addGameDaysJUnit(suite func(string) *junitSuite) {
	for _, g := range r.GameDays {
		for _, p := range g.Probes {
			o := Pass
			detail := fmt.Sprintf("held in %d of %d trials, median success %.1f%%; resilience score %.1f%%", p.Trials-p.Failed, p.Trials, p.SuccessPct, g.Score)
			switch {
			case p.NotApplicable:
				o, detail = NotApplicable, p.Reason
			case p.Failed > 0:
				o = Fail
				detail += "; " + p.Reason
			}
			suite(g.Key).add(fmt.Sprintf("probe %s (%s)", p.Name, p.Mode), g.Key, o, detail, InconclusiveStays)
		}
	}
}
