package reports

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/meshbench/meshbench/runner/results"
)

// Outcome is a gate rule's (or a whole gate's) verdict.
type Outcome string

// Outcomes, from best to worst for exit codes: a failure outranks an
// inconclusive rule, which outranks a pass.
const (
	Pass         Outcome = "pass"
	Inconclusive Outcome = "inconclusive"
	Fail         Outcome = "fail"
	// NotApplicable is a rule whose metric a row does not have (proxy CPU
	// of the baseline): it does not count.
	NotApplicable Outcome = "n/a"
)

func (o Outcome) rank() int {
	switch o {
	case Fail:
		return 2
	case Inconclusive:
		return 1
	}
	return 0
}

// Rule is one gate rule: a relative limit on a metric's change
// ("p99:+5%": fail when the candidate's p99 is more than 5% above the
// base's; "qps:-5%": fail when it is more than 5% below), or a cap on the
// candidate's failed requests ("errors:0" in total, "errors:0.1%" as a
// share).
type Rule struct {
	Text   string `json:"rule"`
	Metric string `json:"metric"`
	// Relative rules bound the ratio candidate/base by Limit (1.05 for +5%,
	// 0.95 for -5%); Increase says which side is the regression.
	Relative bool    `json:"relative"`
	Increase bool    `json:"increase,omitempty"`
	Limit    float64 `json:"limit"`
	// Auto rules (METRIC:auto) take their limit per row from the base
	// run's own trial-to-trial spread (AutoLimit); Limit is then unset.
	Auto bool `json:"auto,omitempty"`
	// ErrorCount caps the candidate's total errors at Limit; otherwise an
	// errors rule caps its error rate.
	ErrorCount bool `json:"errorCount,omitempty"`
}

// DefaultGate is the gate `meshbench compare --gate default` applies: fixed
// limits.
const DefaultGate = "p99:+5%,p50:+5%,cpu:+10%,errors:0"

// AutoGate is `--gate auto`: the same metrics, with limits derived from
// the base run's noise.
const AutoGate = "p99:auto,p50:auto,cpu:auto,errors:0"

// NamedGates are the gates a name stands for.
var NamedGates = map[string]string{"default": DefaultGate, "auto": AutoGate}

// ParseGate reads a comma-separated list of rules: METRIC:+N% or
// METRIC:-N% (relative), METRIC:auto (relative, with the limit the base
// run's noise gives), errors:N (total count) or errors:N% (share); or a
// gate's name (default, auto).
func ParseGate(spec string) ([]Rule, error) {
	if named, ok := NamedGates[strings.ToLower(strings.TrimSpace(spec))]; ok {
		spec = named
	}
	rules, err := parseRules(spec)
	if err != nil {
		return nil, err
	}
	if len(rules) == 0 {
		return nil, fmt.Errorf("empty gate: give rules such as %q", DefaultGate)
	}
	return rules, nil
}

// parseRules reads comma-separated rules, skipping empty ones.
func parseRules(spec string) ([]Rule, error) {
	var rules []Rule
	for _, text := range strings.Split(spec, ",") {
		if text = strings.TrimSpace(text); text == "" {
			continue
		}
		r, err := parseRule(text)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, nil
}

func parseRule(text string) (Rule, error) {
	name, limit, ok := strings.Cut(text, ":")
	if !ok {
		return Rule{}, fmt.Errorf("rule %q: want METRIC:+N%%, METRIC:-N%% or errors:N", text)
	}
	name, limit = strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(limit)
	r := Rule{Text: text}
	if name == "errors" {
		r.Metric = "error-rate"
		pct := strings.HasSuffix(limit, "%")
		v, err := strconv.ParseFloat(strings.TrimSuffix(limit, "%"), 64)
		if err != nil || !(v >= 0) || math.IsInf(v, 0) {
			return Rule{}, fmt.Errorf("rule %q: errors takes a count (errors:0) or a share (errors:0.1%%)", text)
		}
		r.ErrorCount, r.Limit = !pct, v
		if pct {
			r.Limit = v / 100
		}
		return r, nil
	}
	m, ok := MetricByName(name)
	if !ok {
		return Rule{}, fmt.Errorf("rule %q: unknown metric %q (known: errors, %s)", text, name, MetricNames())
	}
	r.Metric, r.Relative = m.Name, true
	if strings.HasPrefix(m.Name, "added-") {
		return Rule{}, fmt.Errorf("rule %q: added latency can be zero or negative, so it has no ratio: gate %s instead", text, strings.TrimPrefix(m.Name, "added-"))
	}
	if strings.EqualFold(limit, "auto") {
		r.Auto, r.Increase = true, m.HigherIsWorse
		return r, nil
	}
	if limit == "" || !strings.HasSuffix(limit, "%") || (limit[0] != '+' && limit[0] != '-') {
		return Rule{}, fmt.Errorf("rule %q: want a signed percentage such as +5%% (fail above), -5%% (fail below) or auto (a limit from the base run's noise)", text)
	}
	v, err := strconv.ParseFloat(strings.TrimSuffix(limit[1:], "%"), 64)
	if err != nil || !(v >= 0) || v >= 100 && limit[0] == '-' || math.IsInf(v, 0) {
		return Rule{}, fmt.Errorf("rule %q: bad percentage %q", text, limit)
	}
	r.Increase = limit[0] == '+'
	if r.Increase {
		r.Limit = 1 + v/100
	} else {
		r.Limit = 1 - v/100
	}
	return r, nil
}

// Change is one metric's change from base to candidate.
type Change struct {
	Metric string `json:"metric"`
	Unit   string `json:"unit"`
	// Base and Candidate are the medians over trials with their bootstrap
	// intervals.
	Base      Interval `json:"base"`
	Candidate Interval `json:"candidate"`
	// Ratio is candidate/base: the Hodges-Lehmann estimate with the
	// Mann-Whitney interval (NaN when a value is not positive).
	Ratio Interval `json:"ratio"`
	// P is the two-sided p-value (Mann-Whitney; against a history, the t
	// test of the candidate's distance from the series): how surprising a
	// difference this large would be if nothing had changed.
	P PValue `json:"p"`
	// why says why a ratio could not be estimated.
	why string
}

// PValue is a p-value, written as null in JSON when there is none (NaN).
type PValue float64

// MarshalJSON writes NaN as null.
func (p PValue) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(p)) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(p))
}

// Verdict is one rule applied to one row.
type Verdict struct {
	Rule    string  `json:"rule"`
	Outcome Outcome `json:"outcome"`
	Detail  string  `json:"detail"`
	// Limit is the ratio limit a relative rule applied (an auto rule's
	// is the row's own).
	Limit float64 `json:"limit,omitempty"`
	// Detectable is the smallest change (a ratio) this rule would fail
	// on with probability DetectPower, from the base run's noise and
	// the trials of both runs: a pass says no change that large happened,
	// not that nothing changed.
	Detectable float64 `json:"detectable,omitempty"`
}

// RowChange compares one (mesh, mode, rate) present in base or candidate.
type RowChange struct {
	Key        string  `json:"key"`
	Mesh       string  `json:"mesh"`
	Mode       string  `json:"mode"`
	Rate       float64 `json:"requestedQPS"`
	BaseTrials int     `json:"baseTrials"`
	// BaseRuns is the number of past runs the base is made of, when it
	// is a history (CompareHistory).
	BaseRuns        int       `json:"baseRuns,omitempty"`
	CandidateTrials int       `json:"candidateTrials"`
	Changes         []Change  `json:"changes,omitempty"`
	Verdicts        []Verdict `json:"verdicts,omitempty"`
	Outcome         Outcome   `json:"outcome"`
	Note            string    `json:"note,omitempty"`
	cand            *Group
	// models are the error models of the changes' ratios, by metric (a
	// metric without one had too few positive base values).
	models map[string]errorModel
	// oneSided are metrics only one of the runs has.
	oneSided []string
}

// trialsText is the row's sizes: "8/8" trials, or "20 runs/8" against a
// history.
func (r *RowChange) trialsText() string {
	if r.BaseRuns > 0 {
		return fmt.Sprintf("%d runs/%d", r.BaseRuns, r.CandidateTrials)
	}
	return fmt.Sprintf("%d/%d", r.BaseTrials, r.CandidateTrials)
}

// sidesText is the row's sizes in a verdict: "8 vs 8 trials".
func (r *RowChange) sidesText() string {
	if r.BaseRuns > 0 {
		return fmt.Sprintf("%d runs vs %d trials", r.BaseRuns, r.CandidateTrials)
	}
	return fmt.Sprintf("%d vs %d trials", r.BaseTrials, r.CandidateTrials)
}

// Comparison is the whole of `meshbench compare`.
type Comparison struct {
	Base      string  `json:"base"`
	Candidate string  `json:"candidate"`
	Gate      []Rule  `json:"gate,omitempty"`
	Level     float64 `json:"level"`
	Seed      uint64  `json:"seed"`
	// History is set when the base is a series of published runs.
	History *HistoryBase `json:"history,omitempty"`
	// Paired is set when base and candidate are two builds' rows of one
	// run, compared trial by trial (ComparePaired).
	Paired  bool         `json:"paired,omitempty"`
	Rows    []*RowChange `json:"rows"`
	Outcome Outcome      `json:"outcome"`
	// Counts of rule verdicts.
	Passed       int `json:"passed"`
	Failed       int `json:"failed"`
	Inconclusive int `json:"inconclusive"`
	// Note says why a gate with rules decided nothing.
	Note string `json:"note,omitempty"`
}

// ShownMetrics are the metrics every comparison shows, gated or not.
var ShownMetrics = []string{"p50", "p99", "co-p99", "qps", "cpu", "mem"}

// Compare matches base's and candidate's groups by (mesh, mode, rate),
// estimates each metric's change with its interval, and applies the rules
// to every matched row. A row missing on either side is inconclusive when
// there are rules: the gate could not check it.
func Compare(baseName string, base []*results.Trial, candName string, cand []*results.Trial, rules []Rule, seed uint64) *Comparison {
	var sides []baseSide
	for _, g := range GroupTrials(base) {
		sides = append(sides, runBase{g})
	}
	c := &Comparison{Base: baseName, Candidate: candName, Gate: rules, Level: DefaultLevel, Seed: seed, Outcome: Pass}
	c.compare(sides, cand)
	return c
}

// baseSide is what a candidate's row is compared with: one run's trials
// (Compare) or a series of past runs (CompareHistory).
type baseSide interface {
	group() *Group
	// sizes are the trials and (for a series) the runs behind the base.
	sizes() (trials, runs int)
	// values are the base's values of a metric, as shown beside the
	// candidate's (a run's trials; a series' run values).
	values(m Metric) []float64
	// change estimates the metric's change to cand with the error model
	// its rules judge by (false: the base is too small or not positive
	// for one).
	change(m Metric, base, cand []float64, candTrials int, rng *rand.Rand) (Change, errorModel, bool)
}

// runBase is one run's group as a base.
type runBase struct{ g *Group }

func (b runBase) group() *Group             { return b.g }
func (b runBase) sizes() (int, int)         { return len(b.g.Trials), 0 }
func (b runBase) values(m Metric) []float64 { return b.g.Values(m) }
func (b runBase) change(m Metric, bv, cv []float64, candTrials int, rng *rand.Rand) (Change, errorModel, bool) {
	_, p := MannWhitney(bv, cv)
	ch := Change{Metric: m.Name, Unit: m.Unit,
		Base:      BootstrapMedian(bv, DefaultLevel, DefaultResamples, rng),
		Candidate: BootstrapMedian(cv, DefaultLevel, DefaultResamples, rng),
		Ratio:     RatioInterval(bv, cv, DefaultLevel), P: PValue(p)}
	noise, ok := NoiseOf(bv)
	return ch, noise.model(len(b.g.Trials), candTrials), ok
}

// compare matches the base's rows with the candidate's by (mesh, mode,
// rate), estimates each metric's change and applies the rules.
func (c *Comparison) compare(sides []baseSide, cand []*results.Trial) {
	rules, seed := c.Gate, c.Seed
	shown := slices.Clone(ShownMetrics)
	for _, r := range rules {
		if !slices.Contains(shown, r.Metric) {
			shown = append(shown, r.Metric)
		}
	}
	cg := GroupTrials(cand)
	byKey := map[string]*Group{}
	for _, g := range cg {
		byKey[g.Key()] = g
	}
	seen := map[string]bool{}
	for _, side := range sides {
		b := side.group()
		seen[b.Key()] = true
		row := &RowChange{Key: b.Key(), Mesh: b.Mesh, Mode: b.Mode, Rate: b.Rate, models: map[string]errorModel{}}
		row.BaseTrials, row.BaseRuns = side.sizes()
		c.Rows = append(c.Rows, row)
		cg := byKey[b.Key()]
		if cg == nil {
			row.Note = "not in the candidate"
			row.Outcome = missingOutcome(rules)
			continue
		}
		row.cand, row.CandidateTrials = cg, len(cg.Trials)
		rng := seeded(seed, b.Key())
		for _, name := range shown {
			m, _ := MetricByName(name)
			bv, cv := side.values(m), cg.Values(m)
			if len(bv) == 0 || len(cv) == 0 {
				if len(bv)+len(cv) > 0 {
					row.oneSided = append(row.oneSided, m.Name)
				}
				continue
			}
			ch, model, ok := side.change(m, bv, cv, row.CandidateTrials, rng)
			row.Changes = append(row.Changes, ch)
			if ok {
				row.models[m.Name] = model
			}
		}
		row.Outcome = Pass
		for _, r := range rules {
			v := judge(r, row)
			if r.Auto && b.Mode == BaselineMode && v.Outcome != NotApplicable {
				// A relative rule cannot fail on the baseline (below), so
				// gating it could only leave the gate undecided.
				v.Outcome = NotApplicable
				v.Detail = "auto rules do not gate the no-mesh baseline (no proxy runs in it; it shows the machine or the harness): " + v.Detail
			}
			if v.Outcome == Fail && r.Relative && b.Mode == BaselineMode {
				// No proxy runs in the baseline: what moved is the machine
				// or the harness, which the gate cannot put on the change.
				v.Outcome = Inconclusive
				v.Detail = "no-mesh baseline moved (machine or harness, not a mesh): " + v.Detail
			}
			row.Verdicts = append(row.Verdicts, v)
			if v.Outcome.rank() > row.Outcome.rank() {
				row.Outcome = v.Outcome
			}
		}
	}
	for _, g := range cg {
		// A paired comparison's candidate side carries the run's baseline
		// trials for metrics against them, not as a row of its own.
		if seen[g.Key()] || c.Paired && g.Mode == BaselineMode {
			continue
		}
		row := &RowChange{Key: g.Key(), Mesh: g.Mesh, Mode: g.Mode, Rate: g.Rate,
			CandidateTrials: len(g.Trials), Note: "new in the candidate", Outcome: NotApplicable, cand: g}
		// Error rules need no base: they apply to new rows too.
		for _, r := range rules {
			if !r.Relative {
				v := judge(r, row)
				row.Verdicts = append(row.Verdicts, v)
				if row.Outcome == NotApplicable || v.Outcome.rank() > row.Outcome.rank() {
					row.Outcome = v.Outcome
				}
			}
		}
		c.Rows = append(c.Rows, row)
	}
	for _, row := range c.Rows {
		if row.Outcome.rank() > c.Outcome.rank() {
			c.Outcome = row.Outcome
		}
		for _, v := range row.Verdicts {
			switch v.Outcome {
			case Pass:
				c.Passed++
			case Fail:
				c.Failed++
			case Inconclusive:
				c.Inconclusive++
			}
		}
		if row.Note == "not in the candidate" && len(rules) > 0 {
			c.Inconclusive++
		}
	}
	// A gate that decided nothing has not passed.
	if len(rules) > 0 && c.Passed+c.Failed+c.Inconclusive == 0 {
		c.Outcome = Inconclusive
		c.Note = "no rule applied to any row of both runs: nothing was gated"
		if len(sides) == 0 && len(cg) == 0 {
			c.Note = "the runs have no fixed-rate rows (max searches are not compared): nothing was gated"
		}
	}
}

func missingOutcome(rules []Rule) Outcome {
	if len(rules) == 0 {
		return NotApplicable
	}
	return Inconclusive
}

func (r *RowChange) change(metric string) (Change, bool) {
	for _, ch := range r.Changes {
		if ch.Metric == metric {
			return ch, true
		}
	}
	return Change{}, false
}

// MinGateLevel is the lowest interval confidence a relative rule may pass
// or fail on: fewer trials leave it inconclusive.
const MinGateLevel = 0.94

// judge applies a rule to a row. A relative rule fails when the whole
// interval of the ratio lies beyond the limit, passes when it lies within,
// and is inconclusive when it straddles the limit.
func judge(r Rule, row *RowChange) Verdict {
	v := Verdict{Rule: r.Text}
	if !r.Relative {
		var errs, reqs int64
		for _, t := range row.cand.Trials {
			errs += t.Errors
			reqs += t.Requests
		}
		if r.ErrorCount {
			v.Outcome, v.Detail = Pass, fmt.Sprintf("%d errors in %d requests (at most %g)", errs, reqs, r.Limit)
			if float64(errs) > r.Limit {
				v.Outcome = Fail
			}
			return v
		}
		rate := 0.0
		if reqs > 0 {
			rate = float64(errs) / float64(reqs)
		}
		v.Outcome, v.Detail = Pass, fmt.Sprintf("error rate %.3g%% (at most %g%%)", rate*100, r.Limit*100)
		if rate > r.Limit {
			v.Outcome = Fail
		}
		return v
	}
	ch, ok := row.change(r.Metric)
	switch {
	case !ok && slices.Contains(row.oneSided, r.Metric):
		v.Outcome, v.Detail = Inconclusive, fmt.Sprintf("%s was measured in only one of the runs", r.Metric)
		return v
	case !ok:
		v.Outcome, v.Detail = NotApplicable, fmt.Sprintf("%s does not apply to this row", r.Metric)
		return v
	case ch.why != "":
		v.Outcome, v.Detail = Inconclusive, ch.why
		return v
	case math.IsNaN(ch.Ratio.Low):
		v.Outcome, v.Detail = Inconclusive, fmt.Sprintf("%s has values at or below zero: no ratio", r.Metric)
		return v
	}
	model, noisy := row.models[r.Metric]
	return judgeRatio(r, ch.Ratio, model, noisy, row.sidesText())
}

// judgeRatio applies a relative rule to the interval of a ratio; model
// (when noisy) is the base's error model, which sizes an auto limit and
// the detectable change; sides says what was compared ("8 vs 8 trials").
func judgeRatio(r Rule, iv Interval, model errorModel, noisy bool, sides string) Verdict {
	v := Verdict{Rule: r.Text}
	if r.Auto {
		if !noisy {
			v.Outcome, v.Detail = Inconclusive, fmt.Sprintf("%s: an auto limit needs two or more positive base values", r.Metric)
			return v
		}
		r.Limit = model.autoLimit(iv.Level, r.Increase)
	}
	v.Limit = r.Limit
	if noisy {
		v.Detectable = model.detectable(r.Limit, iv.Level, DetectPower, r.Increase)
	}
	if iv.Level < MinGateLevel {
		v.Outcome = Inconclusive
		v.Detail = fmt.Sprintf("%s x%.3f: %s allow only a %.0f%% interval; a verdict needs %.0f%% (4 trials a side suffice; 6 pairs when paired)",
			r.Metric, iv.Value, sides, iv.Level*100, MinGateLevel*100)
		return v
	}
	v.Detail = fmt.Sprintf("%s x%.3f [%.3f, %.3f] (%.0f%% interval, %s), limit x%.3f",
		r.Metric, iv.Value, iv.Low, iv.High, iv.Level*100, sides, r.Limit)
	if r.Auto {
		v.Detail += fmt.Sprintf(" (auto: %s, where an unchanged candidate passes %.1f%% of the time, at least %s)",
			model.about, AutoPass*100, floorText(r.Increase))
	}
	if noisy {
		v.Detail += fmt.Sprintf("; detects %s at %.0f%% power", changeText(v.Detectable), DetectPower*100)
	}
	switch {
	case r.Increase && iv.Low > r.Limit, !r.Increase && iv.High < r.Limit:
		v.Outcome = Fail
	case r.Increase && iv.High <= r.Limit, !r.Increase && iv.Low >= r.Limit:
		v.Outcome = Pass
	default:
		v.Outcome = Inconclusive
	}
	return v
}
