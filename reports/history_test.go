package reports

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// twoLevel draws runs of n trials each around centre: every run moves by
// its own drift (log spread drift), and its trials spread around it by
// within, as a benchmark on a shared machine does from run to run.
func twoLevel(rng *rand.Rand, runs, n int, centre, drift, within float64) [][]float64 {
	out := make([][]float64, runs)
	for i := range out {
		out[i] = lognormal(rng, n, centre*math.Exp(drift*rng.NormFloat64()), within)
	}
	return out
}

func TestRunNoiseOf(t *testing.T) {
	n, ok := RunNoiseOf([][]float64{{1, 1, 1}, {2, 2}, {4}, {}})
	if !ok || n.Runs != 3 || n.Within != 0 || math.Abs(n.Center-math.Log(2)) > 1e-12 || math.Abs(n.Between-math.Log(2)) > 1e-12 || math.Abs(n.Trials-2) > 1e-12 {
		t.Errorf("RunNoiseOf = %+v, %v; want 3 runs around 2, a log spread of log 2 between and none within", n, ok)
	}
	if _, ok := RunNoiseOf([][]float64{{1}, {2}}); ok {
		t.Error("two runs gave a run-to-run spread")
	}
	if _, ok := RunNoiseOf([][]float64{{1}, {2}, {0}}); ok {
		t.Error("a zero value gave a spread of logarithms")
	}
	// Runs that differ only as much as their trials do have no drift.
	if d := (RunNoise{Runs: 20, Between: 0.04, Within: 0.1, Trials: 8}).Drift(); d != 0 {
		t.Errorf("drift %.4f where the trials explain all of the runs' spread", d)
	}
}

// The history's noise model against the procedure it models, on runs
// whose two levels of noise are known (8% drift from run to run, 10%
// between trials, 20 runs of 8 trials, a candidate of 8): an unchanged
// candidate passes an auto rule about AutoPass of the time and never
// fails, and at the change the model calls detectable the rule fails
// about DetectPower of the time. The gate on one base run, given the same
// runs, fails unchanged candidates often: its interval knows nothing of
// the drift, which is what a history is for. Seeded: the same draws every
// run.
func TestHistoryModelMatchesTheGate(t *testing.T) {
	const reps, runs, n = 1000, 20, 8
	const drift, within = 0.08, 0.10
	auto, _ := parseRule("p99:auto")
	rng := rand.New(rand.NewPCG(3, 5))
	judgeAt := func(change float64) (map[Outcome]int, errorModel) {
		got := map[Outcome]int{}
		var model errorModel
		for range reps {
			hist := twoLevel(rng, runs, n, 2, drift, within)
			cand := twoLevel(rng, 1, n, 2*change, drift, within)[0]
			iv, _, m, why := historyRatio(hist, cand)
			if why != "" {
				t.Fatal(why)
			}
			model = m
			got[judgeRatio(auto, iv, m, true, "").Outcome]++
		}
		return got, model
	}
	aa, model := judgeAt(1)
	if pass := float64(aa[Pass]) / reps; pass < 0.97 || aa[Fail] > reps/200 {
		t.Errorf("no change: auto passes %.1f%%, fails %d times; want about %.1f%% and at most %d", pass*100, aa[Fail], AutoPass*100, reps/200)
	}
	d := model.detectable(model.autoLimit(DefaultLevel, true), DefaultLevel, DetectPower, true)
	ab, _ := judgeAt(d)
	if fail := float64(ab[Fail]) / reps; fail < 0.65 || fail > 0.93 {
		t.Errorf("at the detectable change x%.3f: fails %.1f%%, want about %.0f%%", d, fail*100, DetectPower*100)
	}
	// One base run of the same series, judged as Compare judges it:
	// its model knows only the trials' spread, so unchanged candidates
	// pass far less often than its AutoPass says.
	single := map[Outcome]int{}
	for range reps {
		pair := twoLevel(rng, 2, n, 2, drift, within)
		noise, ok := NoiseOf(pair[0])
		single[judgeRatio(auto, RatioInterval(pair[0], pair[1], DefaultLevel), noise.model(n, n), ok, "").Outcome]++
	}
	t.Logf("drift %.0f%%, trials %.0f%%: history of %d runs: A/A pass %.1f%%, fail %.1f%%; detects x%.3f, fails it %.1f%%; one base run: A/A pass %.1f%%, fail %.1f%%",
		drift*100, within*100, runs, 100*float64(aa[Pass])/reps, 100*float64(aa[Fail])/reps, d, 100*float64(ab[Fail])/reps,
		100*float64(single[Pass])/reps, 100*float64(single[Fail])/reps)
	if pass := float64(single[Pass]) / reps; pass > 0.95 {
		t.Errorf("one base run passed %.1f%% of unchanged candidates despite the drift; want well below %.1f%%", pass*100, AutoPass*100)
	}
}

// stepSeries is runs values of log spread s, the second half x step.
func stepSeries(rng *rand.Rand, runs int, s, step float64) []float64 {
	out := make([]float64, runs)
	for i := range out {
		out[i] = math.Log(2) + s*rng.NormFloat64()
		if i >= runs/2 {
			out[i] += math.Log(step)
		}
	}
	return out
}

// The change-point search finds a step no noise hides where it is, finds
// nothing in a flat series as often as its alpha allows, and on 20 runs
// finds a 10% step at the rates the log shows for each run-to-run spread
// (the table in the README's gate section).
func TestChangePoints(t *testing.T) {
	o := DefaultChangeOptions
	at, ps := ChangePoints([]float64{1, 1.01, 0.99, 1, 1.02, 0.98, 2, 2.01, 1.99, 2, 2.02, 1.98}, o)
	if len(at) != 1 || at[0] != 6 || ps[0] >= o.Alpha {
		t.Errorf("a doubling after 6 runs: change points %v (p %v), want [6]", at, ps)
	}
	at, _ = ChangePoints([]float64{1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3}, o)
	if fmt.Sprint(at) != "[6 12]" {
		t.Errorf("two steps: change points %v, want [6 12]", at)
	}
	// 3 against 6 identical values: 2 of the 84 arrangements separate
	// them as well, so the permutation test cannot reach p < 0.01.
	if at, _ := ChangePoints([]float64{1, 1, 1, 2, 2, 2, 2, 2, 2}, o); len(at) != 0 {
		t.Errorf("3 then 6 runs: change points %v, want none at alpha %g", at, o.Alpha)
	}
	if at, _ := ChangePoints([]float64{1, 2, 3, 4, 5}, o); len(at) != 0 {
		t.Errorf("5 points with levels of at least 3: change points %v", at)
	}
	rng := rand.New(rand.NewPCG(11, 13))
	const reps, runs = 300, 20
	flat := 0
	for range reps {
		if at, _ := ChangePoints(stepSeries(rng, runs, 0.1, 1), o); len(at) > 0 {
			flat++
		}
	}
	if rate := float64(flat) / reps; rate > 3*o.Alpha {
		t.Errorf("flat series: a change point in %.1f%% of them, want about %.0f%%", rate*100, o.Alpha*100)
	}
	var table []string
	for _, s := range []float64{0.02, 0.03, 0.05, 0.08, 0.10, 0.20} {
		found := 0
		for range reps {
			at, _ := ChangePoints(stepSeries(rng, runs, s, 1.10), o)
			for _, i := range at {
				if i >= runs/2-2 && i <= runs/2+2 {
					found++
					break
				}
			}
		}
		rate := float64(found) / reps
		table = append(table, fmt.Sprintf("spread %.0f%%: %.0f%%", s*100, rate*100))
		if s <= 0.03 && rate < 0.9 {
			t.Errorf("a 10%% step in 20 runs of %.0f%% spread found %.0f%% of the time, want nearly always", s*100, rate*100)
		}
	}
	t.Logf("20 runs, +10%% after 10, found within 2 runs of it (flat series: %.1f%% false): %s", 100*float64(flat)/reps, strings.Join(table, ", "))
}

// historyRuns makes published-looking runs of the synthetic sidecar
// rows, a day apart, the sidecar's p99 times factor from run from on.
func historyRuns(runs int, from int, factor float64) []HistoryRun {
	var out []HistoryRun
	start := time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC)
	for i := range runs {
		f := 1.0
		if i >= from {
			f = factor
		}
		out = append(out, HistoryRun{ID: fmt.Sprintf("r%02d", i), Start: start.Add(time.Duration(i) * 24 * time.Hour), Scenario: "nightly",
			Trials: synthetic(uint64(100+i), 4, 2.0*f, 0.02)})
	}
	return out
}

func TestCompareHistory(t *testing.T) {
	gate, _ := ParseGate("auto")
	h := HistoryBase{Dir: "idx", Scenario: "nightly", Window: 10}
	runs := historyRuns(25, 100, 1)
	same := CompareHistory(h, runs, "same", synthetic(7, 4, 2.0, 0.02), gate, DefaultSeed)
	worse := CompareHistory(h, runs, "worse", synthetic(7, 4, 2.6, 0.02), gate, DefaultSeed)
	if got := verdict(t, same, "meshbench/sidecar@1000", "p99:auto"); got != Pass {
		t.Errorf("unchanged candidate against the history: p99 %s, want pass", got)
	}
	if got := verdict(t, worse, "meshbench/sidecar@1000", "p99:auto"); got != Fail {
		t.Errorf("candidate 30%% slower than the history: p99 %s, want fail", got)
	}
	if same.History.Runs != 10 || !same.History.From.Equal(runs[15].Start) || same.Rows[0].BaseRuns != 10 || same.Rows[0].BaseTrials != 40 {
		t.Errorf("window of 10: %+v, row %d runs of %d trials", same.History, same.Rows[0].BaseRuns, same.Rows[0].BaseTrials)
	}
	var text bytes.Buffer
	if err := worse.WriteText(&text, InconclusiveStays); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"10 runs/4", "10 runs vs 4 trials", "run-to-run spread", "RATIO is the candidate over the runs' geometric mean"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	few := CompareHistory(h, runs[:2], "few", synthetic(7, 4, 2.0, 0.02), gate, DefaultSeed)
	if got := verdict(t, few, "meshbench/sidecar@1000", "p99:auto"); got != Inconclusive || !strings.Contains(few.Rows[1].Verdicts[0].Detail, "the history has 2 runs of this row; a verdict needs 3") {
		t.Errorf("two runs of history: %s, %+v", got, few.Rows[1].Verdicts)
	}
	var js bytes.Buffer
	if err := worse.WriteJSON(&js, InconclusiveStays); err != nil || !json.Valid(js.Bytes()) || !strings.Contains(js.String(), `"baseRuns": 10`) {
		t.Errorf("JSON: %v\n%.500s", err, js.String())
	}
}

func TestHistoryReport(t *testing.T) {
	metrics := []Metric{}
	for _, name := range HistoryMetrics {
		m, _ := MetricByName(name)
		metrics = append(metrics, m)
	}
	h := NewHistoryReport("idx", historyRuns(16, 8, 1.5), metrics, DefaultChangeOptions)
	var p99 *Series
	for _, s := range h.Series {
		if s.Key == "meshbench/sidecar@1000" && s.Metric == "p99" {
			p99 = s
		}
		if s.Metric == "cpu" && len(s.Changes) > 0 {
			t.Errorf("%s cpu did not change but has change points %+v", s.Key, s.Changes)
		}
	}
	if p99 == nil || len(p99.Points) != 16 || len(p99.Changes) != 1 {
		t.Fatalf("sidecar p99 series: %+v", p99)
	}
	if c := p99.Changes[0]; c.Index != 8 || c.RunID != "r08" || !c.Regression || math.Abs(c.Ratio-1.5) > 0.05 {
		t.Errorf("change point %+v, want a x1.5 regression from r08", c)
	}
	if reg := h.Regressed(); len(reg) == 0 {
		t.Error("no series stands regressed")
	}
	for name, write := range map[string]func(*bytes.Buffer) error{
		"text": func(b *bytes.Buffer) error { return h.WriteText(b) },
		"md":   func(b *bytes.Buffer) error { return h.WriteMarkdown(b) },
		"html": func(b *bytes.Buffer) error { return h.WriteHTML(b) },
	} {
		var b bytes.Buffer
		if err := write(&b); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), "r08") || !strings.Contains(b.String(), "REGRESSION") || !strings.Contains(b.String(), changeText(p99.Changes[0].Ratio)) {
			t.Errorf("%s lacks the change point:\n%s", name, b.String())
		}
		if name == "html" && (strings.Count(b.String(), "<svg") != len(h.Series) || !strings.Contains(b.String(), `class="cp regression"`)) {
			t.Errorf("html: %d charts for %d series", strings.Count(b.String(), "<svg"), len(h.Series))
		}
	}
}
