package reports

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"

	"github.com/meshbench/meshbench/runner/results"
)

// PowerPlan is what `meshbench gate plan` prints: for each row of a run
// and each relative rule of a gate, the noise the run measured, the
// smallest change the rule detects at DetectPower with the run's trial
// count on both sides, and the trials a side needed for the changes the
// user names.
type PowerPlan struct {
	Results string     `json:"results"`
	Gate    []Rule     `json:"gate"`
	Detect  []Rule     `json:"detect,omitempty"`
	Level   float64    `json:"level"`
	Power   float64    `json:"power"`
	Rows    []*PlanRow `json:"rows"`
	Skipped []string   `json:"skipped,omitempty"`
	Notes   []string   `json:"notes,omitempty"`
}

// PlanRow is one (mesh, mode, rate) of the run.
type PlanRow struct {
	Key    string      `json:"key"`
	Trials int         `json:"trials"`
	Rules  []*PlanRule `json:"rules"`
}

// PlanRule is one relative rule on one row.
type PlanRule struct {
	Rule   string  `json:"rule"`
	Metric string  `json:"metric"`
	Spread float64 `json:"spread"`
	// Limit is the rule's ratio limit against a candidate with as many
	// trials (an auto rule's, from this run's noise).
	Limit float64 `json:"limit"`
	// Detectable is the smallest change the rule fails on with
	// probability Power; 0 when the run cannot say (Note).
	Detectable float64    `json:"detectable,omitempty"`
	Needs      []PlanNeed `json:"needs,omitempty"`
	Note       string     `json:"note,omitempty"`
}

// PlanNeed is the trials a side a named change needs.
type PlanNeed struct {
	Change string  `json:"change"`
	Ratio  float64 `json:"ratio"`
	// Trials is the count per side; 0 when no count suffices (Note).
	Trials int    `json:"trials,omitempty"`
	Note   string `json:"note,omitempty"`
}

// ParseDetect reads the changes to plan for: METRIC:+N% or METRIC:-N%,
// comma-separated.
func ParseDetect(spec string) ([]Rule, error) {
	out, err := parseRules(spec)
	if err != nil {
		return nil, err
	}
	for _, r := range out {
		if !r.Relative || r.Auto {
			return nil, fmt.Errorf("%q: name a relative change such as p99:+10%% or qps:-10%%", r.Text)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no change named: give changes such as p99:+10%%")
	}
	return out, nil
}

// Plan sizes the gate's relative rules on the run's rows; detect names
// changes to give the trials for (each applies to the rules on its metric
// that fail in its direction).
func Plan(name string, trials []*results.Trial, gate, detect []Rule) *PowerPlan {
	p := &PowerPlan{Results: name, Gate: gate, Detect: detect, Level: DefaultLevel, Power: DetectPower}
	for _, g := range GroupTrials(trials) {
		if g.Mode == BaselineMode {
			p.Skipped = append(p.Skipped, g.Key())
			continue
		}
		row := &PlanRow{Key: g.Key(), Trials: len(g.Trials)}
		for _, r := range gate {
			if !r.Relative {
				continue
			}
			m, _ := MetricByName(r.Metric)
			values := g.Values(m)
			if len(values) == 0 {
				continue
			}
			pr := &PlanRule{Rule: r.Text, Metric: r.Metric, Limit: r.Limit}
			row.Rules = append(row.Rules, pr)
			noise, ok := NoiseOf(values)
			if !ok {
				pr.Note = "needs two or more positive trials to measure the noise"
				continue
			}
			pr.Spread = noise.Spread
			n := len(values)
			level := RankLevel(n, n)
			if r.Auto {
				pr.Limit = AutoLimit(noise, n, n, level, r.Increase)
			}
			if n >= MinPlanTrials {
				pr.Detectable = Detectable(pr.Limit, noise, n, n, level, p.Power, r.Increase)
			} else {
				pr.Note = fmt.Sprintf("%d trials a side give no verdict (%d or more do)", n, MinPlanTrials)
			}
			for _, d := range detect {
				if d.Metric != r.Metric || d.Increase != r.Increase {
					continue
				}
				need := PlanNeed{Change: d.Text, Ratio: d.Limit}
				k, ok := TrialsFor(noise, d.Limit, r.Limit, r.Auto, p.Power, r.Increase)
				switch {
				case ok:
					need.Trials = k
				case r.Auto:
					need.Note = "within the auto floor (" + floorText(r.Increase) + ")"
				default:
					need.Note = "within the rule's limit: it never fails on it"
				}
				pr.Needs = append(pr.Needs, need)
			}
		}
		if len(row.Rules) > 0 {
			p.Rows = append(p.Rows, row)
		}
	}
	for _, d := range detect {
		if !p.planned(d) {
			p.Notes = append(p.Notes, fmt.Sprintf("%s: no relative rule of the gate on %s fails in that direction", d.Text, d.Metric))
		}
	}
	return p
}

func (p *PowerPlan) planned(d Rule) bool {
	for _, row := range p.Rows {
		for _, r := range row.Rules {
			for _, n := range r.Needs {
				if n.Change == d.Text {
					return true
				}
			}
		}
	}
	return false
}

func (r *PlanRule) detectText() string {
	if r.Detectable == 0 {
		return "-"
	}
	return changeText(r.Detectable)
}

func (r *PlanRule) needsText() string {
	var parts []string
	for _, n := range r.Needs {
		if n.Trials > 0 {
			parts = append(parts, fmt.Sprintf("%s: %d", n.Change, n.Trials))
		} else {
			parts = append(parts, fmt.Sprintf("%s: %s", n.Change, n.Note))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "; ")
}

func (p *PowerPlan) notes() []string {
	out := []string{fmt.Sprintf("SPREAD is the standard deviation of the log of each trial's value (about its coefficient of variation).\n"+
		"LIMIT is the rule's against a candidate with as many trials; DETECTS is the smallest change it fails on %.0f%% of\n"+
		"the time (the rank intervals compare uses, %.0f%% or what few trials reach; Student's t approximation of the\n"+
		"Hodges-Lehmann estimate); NEEDS is trials a side for the named changes.", p.Power*100, p.Level*100)}
	if len(p.Skipped) > 0 {
		out = append(out, fmt.Sprintf("Not planned: %s (the no-mesh baseline: a relative rule never fails there).", strings.Join(p.Skipped, ", ")))
	}
	return append(out, p.Notes...)
}

// WriteText writes the plan as a terminal table.
func (p *PowerPlan) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "results: %s\n\n", p.Results)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MESH/MODE@RATE\tTRIALS\tRULE\tSPREAD\tLIMIT\tDETECTS\tNEEDS (TRIALS A SIDE)\tNOTE")
	for _, row := range p.Rows {
		for i, r := range row.Rules {
			key, trials := "", ""
			if i == 0 {
				key, trials = row.Key, fmt.Sprint(row.Trials)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", key, trials, r.Rule, spreadText(r.Spread), changeText(r.Limit), r.detectText(), r.needsText(), r.Note)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, n := range p.notes() {
		fmt.Fprintln(w, n)
	}
	return nil
}

// WriteMarkdown writes the plan for a CI step summary.
func (p *PowerPlan) WriteMarkdown(w io.Writer) error {
	fmt.Fprintf(w, "## meshbench gate plan\n\nResults `%s`.\n\n", p.Results)
	fmt.Fprintf(w, "| Row | Trials | Rule | Spread | Limit | Detects (%.0f%%) | Needs (trials a side) | Note |\n|---|---:|---|---:|---:|---:|---|---|\n", p.Power*100)
	for _, row := range p.Rows {
		for _, r := range row.Rules {
			fmt.Fprintf(w, "| %s | %d | `%s` | %s | %s | %s | %s | %s |\n", row.Key, row.Trials, r.Rule, spreadText(r.Spread), changeText(r.Limit), r.detectText(), r.needsText(), r.Note)
		}
	}
	fmt.Fprintln(w)
	for _, n := range p.notes() {
		fmt.Fprintf(w, "%s\n\n", strings.ReplaceAll(n, "\n", " "))
	}
	return nil
}

// WriteJSON writes the plan as JSON.
func (p *PowerPlan) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

func spreadText(s float64) string {
	if s == 0 || math.IsNaN(s) {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", s*100)
}
