package reports

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"fortio.org/fortio/stats"

	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/scenarios"
)

// Report is everything `meshbench report` renders about one run.
type Report struct {
	Manifest *results.Manifest `json:"manifest"`
	Rows     []*Row            `json:"rows"`
	Stats    []*GroupStats     `json:"statistics"`
	Max      []*MaxRow         `json:"max,omitempty"`
	SLOs     []ObjectiveResult `json:"slos,omitempty"`
	// GameDays are the rows' game-day verdicts (scenarios with probes).
	GameDays []GameDayRow `json:"gameDays,omitempty"`
	// Profiles are the Go proxies' profiles per row (LoadProfiles).
	Profiles []*ProfileSummary `json:"profiles,omitempty"`
	Seed     uint64            `json:"seed"`
	groups   []*Group
	trials   []*results.Trial
	hist     map[string]*stats.HistogramData
}

// NewReport summarizes a run: the table's rows, every metric's median with
// its bootstrap interval (seeded), max searches, and the objectives (the
// scenario's, then extra) checked against every row they apply to.
func NewReport(m *results.Manifest, trials []*results.Trial, extra []scenarios.Objective, seed uint64) *Report {
	groups := GroupTrials(trials)
	r := &Report{Manifest: m, Rows: Summarize(trials), Stats: Statistics(groups, seed), Seed: seed, groups: groups, trials: trials}
	var objs []scenarios.Objective
	if m != nil {
		if len(m.Max) > 0 {
			r.Max = SummarizeMax(m)
		}
		if m.Scenario != nil {
			objs = m.Scenario.Objectives()
		}
	}
	seen := map[string]bool{}
	var all []scenarios.Objective
	for _, o := range append(objs, extra...) {
		if !seen[o.Text] {
			seen[o.Text] = true
			all = append(all, o)
		}
	}
	r.SLOs = CheckObjectives(all, groups)
	r.GameDays = SummarizeGameDays(groups)
	return r
}

// ObjectiveResult is one objective checked against one row.
type ObjectiveResult struct {
	Objective string  `json:"objective"`
	Key       string  `json:"key"`
	Value     float64 `json:"value"`
	Measured  string  `json:"measured"`
	Holds     bool    `json:"holds"`
	Trials    int     `json:"trials"`
}

// CheckObjectives judges each objective on the median over trials of every
// row it applies to (errors: the total over trials). An objective that
// applies to no row fails: it was meant to check something the run lacks.
func CheckObjectives(objs []scenarios.Objective, groups []*Group) []ObjectiveResult {
	var out []ObjectiveResult
	for _, o := range objs {
		matched := false
		for _, g := range groups {
			if !o.Applies(g.Mesh, g.Mode, g.Rate) {
				continue
			}
			res := ObjectiveResult{Objective: o.Text, Key: g.Key(), Trials: len(g.Trials)}
			if o.Metric == "errors" {
				var n int64
				for _, t := range g.Trials {
					n += t.Errors
				}
				res.Value, res.Measured = float64(n), fmt.Sprintf("%d errors", n)
			} else {
				m, ok := MetricByName(o.Metric)
				v := g.Values(m)
				if !ok || len(v) == 0 {
					continue // added latency of the baseline, proxy figures without proxies
				}
				res.Value = Median(v)
				res.Measured = fmt.Sprintf("%s %s (median of %d)", o.Metric, m.Format(res.Value), len(v))
			}
			res.Holds = o.Holds(res.Value)
			matched = true
			out = append(out, res)
		}
		if !matched {
			out = append(out, ObjectiveResult{Objective: o.Text, Measured: "no (mesh, mode, rate) of the run matches it"})
		}
	}
	return out
}

// estimateText is "median [low, high]" in the metric's unit.
func estimateText(e Estimate) string {
	m, _ := MetricByName(e.Metric)
	iv := e.Median
	if iv.N < 2 {
		return m.Format(iv.Value)
	}
	return fmt.Sprintf("%s [%s, %s]", m.Format(iv.Value), m.Format(iv.Low), m.Format(iv.High))
}

// statColumns are the metrics of the statistics table.
var statColumns = []string{"p50", "p90", "p99", "p99.9", "added-p50", "added-p99", "qps", "error-rate", "cpu", "mem"}

// WriteText writes the run's description, the table, the statistics with
// their intervals, and the objectives.
func (r *Report) WriteText(w io.Writer) error {
	r.writeHeader(w, "")
	if err := WriteTable(w, r.Manifest, r.Rows); err != nil {
		return err
	}
	if len(r.Stats) > 0 {
		fmt.Fprintf(w, "\nMedians over trials with 95%% bootstrap intervals (seed %d; N trials per row; MIN-MAX is the\ntrial-to-trial spread of p99, the noise):\n", r.Seed)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ROW\tN\t"+strings.ToUpper(strings.Join(statColumns, "\t"))+"\tP99 MIN-MAX")
		for _, g := range r.Stats {
			fmt.Fprintf(tw, "%s\t%d", g.Key, g.Trials)
			for _, c := range statColumns {
				cell := "-"
				if e, ok := g.Get(c); ok {
					cell = estimateText(e)
				}
				fmt.Fprintf(tw, "\t%s", cell)
			}
			spread := "-"
			if e, ok := g.Get("p99"); ok {
				spread = ms(e.Min) + "-" + ms(e.Max)
			}
			fmt.Fprintf(tw, "\t%s\n", spread)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if err := r.writeGameDaysText(w); err != nil {
		return err
	}
	WriteProfilesText(w, r.Profiles)
	if len(r.SLOs) > 0 {
		fmt.Fprintln(w, "\nObjectives:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, s := range r.SLOs {
			verdict := "FAIL"
			if s.Holds {
				verdict = "ok"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", verdict, s.Objective, s.Key, s.Measured)
		}
		return tw.Flush()
	}
	return nil
}

// writeHeader describes the run: scenario, time, host, platform.
func (r *Report) writeHeader(w io.Writer, prefix string) {
	m := r.Manifest
	if m == nil {
		return
	}
	name := ""
	if m.Scenario != nil {
		name = m.Scenario.Name
	}
	fmt.Fprintf(w, "%sRun %s: scenario %q, %s, meshbench %s (%s)\n", prefix, m.RunID, name, m.StartTime.UTC().Format(time.RFC3339), m.Meshbench.Version, m.Meshbench.Commit)
	fmt.Fprintf(w, "%sHost: %d CPUs (%s), %d MB, kernel %s; platform %s, network %s", prefix, m.Host.CPUs, m.Host.CPUModel, m.Host.MemoryMB, m.Host.Kernel, m.Platform.Name, m.Platform.Network)
	if m.Scenario != nil {
		fmt.Fprintf(w, "; topology %s", m.Scenario.Topology.Shape())
	}
	fmt.Fprintf(w, "\n\n")
}

// WriteMarkdown writes the report for a CI step summary or a pull request.
func (r *Report) WriteMarkdown(w io.Writer) error {
	m := r.Manifest
	if m != nil && m.Scenario != nil {
		fmt.Fprintf(w, "## meshbench: %s\n\n", m.Scenario.Name)
	} else {
		fmt.Fprintf(w, "## meshbench report\n\n")
	}
	r.writeHeader(w, "")
	if t := r.controlPlaneText(); t != "" {
		fmt.Fprintf(w, "```\n%s```\n\n", t)
	}
	for _, mr := range r.Max {
		if mr == r.Max[0] {
			fmt.Fprintf(w, "| Mesh | Mode | Trials | Max QPS | [min, max] | P99 at max | Probes |\n|---|---|---:|---:|---:|---:|---:|\n")
		}
		fmt.Fprintf(w, "| %s | %s | %d | %.0f | [%.0f, %.0f] | %s | %d |\n", mr.Mesh, mr.Mode, mr.Trials, mr.Rate, mr.RateSpread[0], mr.RateSpread[1], ms(mr.P99Ms), mr.Probes)
	}
	if len(r.Max) > 0 {
		fmt.Fprintln(w)
	}
	if len(r.Stats) > 0 {
		head := []string{"Mesh/mode@rate", "N"}
		for _, c := range statColumns {
			head = append(head, c)
		}
		fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat("---|", len(head)))
		for _, g := range r.Stats {
			cells := []string{g.Key, fmt.Sprint(g.Trials)}
			for _, c := range statColumns {
				cell := "-"
				if e, ok := g.Get(c); ok {
					cell = estimateText(e)
				}
				cells = append(cells, cell)
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		}
		fmt.Fprintf(w, "\nMedians over N trials with 95%% bootstrap intervals (seed %d).", r.Seed)
	}
	if m != nil {
		for _, c := range m.Calibrations {
			fmt.Fprintf(w, " Harness floor at %g rps: p50 %s, p99 %s.", c.Requested, ms(c.LatencyMs.P50), ms(c.LatencyMs.P99))
		}
		for _, u := range m.Unavailable {
			fmt.Fprintf(w, " %s/%s unavailable: %s.", u.Mesh, u.Mode, u.Reason)
		}
		for _, l := range SharedNodeLines(m, r.Rows) {
			fmt.Fprintf(w, " %s", l)
		}
	}
	fmt.Fprintln(w)
	if len(r.SLOs) > 0 {
		fmt.Fprintf(w, "\n| Objective | Row | Measured | Verdict |\n|---|---|---|---|\n")
		for _, s := range r.SLOs {
			verdict := "❌ fail"
			if s.Holds {
				verdict = "✅ ok"
			}
			fmt.Fprintf(w, "| `%s` | %s | %s | %s |\n", s.Objective, s.Key, s.Measured, verdict)
		}
	}
	r.writeGameDaysMarkdown(w)
	return nil
}

// WriteJUnit writes the objectives as test cases, one suite per row (and
// one for objectives that matched no row), plus a case per row that its
// trials completed without errors.
func (r *Report) WriteJUnit(w io.Writer) error {
	suites := map[string]*junitSuite{}
	var order []string
	suite := func(key string) *junitSuite {
		if suites[key] == nil {
			suites[key] = &junitSuite{Name: "meshbench " + key}
			order = append(order, key)
		}
		return suites[key]
	}
	for _, g := range r.groups {
		var errs, reqs int64
		for _, t := range g.Trials {
			errs += t.Errors
			reqs += t.Requests
		}
		// A game day's faults cause errors by design: its probes judge
		// them (their cases below).
		gameDay := slices.ContainsFunc(g.Trials, func(t *results.Trial) bool { return t.Verdict != nil })
		o := Pass
		detail := fmt.Sprintf("%d trials, %d requests, %d errors", len(g.Trials), reqs, errs)
		if reqs == 0 || errs > 0 && !gameDay {
			o = Fail
		}
		if gameDay {
			detail += " (a game day: its probes judge the errors)"
		}
		suite(g.Key()).add("trials completed", g.Key(), o, detail, InconclusiveStays)
	}
	for _, s := range r.SLOs {
		key := s.Key
		if key == "" {
			key = "unmatched objectives"
		}
		o := Fail
		if s.Holds {
			o = Pass
		}
		suite(key).add(s.Objective, key, o, s.Measured, InconclusiveStays)
	}
	r.addGameDaysJUnit(suite)
	var out []junitSuite
	for _, k := range order {
		out = append(out, *suites[k])
	}
	return writeJUnit(w, "meshbench report", out)
}

// WriteJSON writes the report as JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Failed reports whether an objective or a game day failed.
func (r *Report) Failed() bool {
	for _, s := range r.SLOs {
		if !s.Holds {
			return true
		}
	}
	for _, g := range r.GameDays {
		if !g.Pass() {
			return true
		}
	}
	return false
}
