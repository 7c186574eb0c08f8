package reports

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// lognormal draws n trials around centre with the given log spread.
func lognormal(rng *rand.Rand, n int, centre, spread float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = centre * math.Exp(spread*rng.NormFloat64())
	}
	return out
}

// outcomes applies rule to reps simulated comparisons of n trials a side
// (candidate = base x change) through the interval compare computes, and
// counts the verdicts.
func outcomes(rule Rule, reps, n int, spread, change float64, seed uint64) map[Outcome]int {
	rng := rand.New(rand.NewPCG(seed, 7))
	got := map[Outcome]int{}
	for range reps {
		base := lognormal(rng, n, 2, spread)
		cand := lognormal(rng, n, 2*change, spread)
		noise, ok := NoiseOf(base)
		got[judgeRatio(rule, RatioInterval(base, cand, DefaultLevel), noise.model(n, n), ok, "").Outcome]++
	}
	return got
}

// The noise model against the procedure it models, on data whose noise
// is known: with nothing changed an auto rule passes about AutoPass of
// the time and never fails, and at the change Detectable names a rule
// fails about DetectPower of the time. Seeded: the same draws every run.
// At 8 trials a side (measured here) an unchanged candidate passes 98.5%
// against AutoPass's 99.5%, and the stated detectable change fails 75.4%
// with an auto limit, 86.1% with a fixed one: the bounds allow that; a
// model with a quantile of the wrong side, normal quantiles (93% A/A), or
// the spread of one trial taken for the ratio's lands outside them.
func TestNoiseModelMatchesTheGate(t *testing.T) {
	const reps, n = 2000, 8
	auto, _ := parseRule("p99:auto")
	fixed, _ := parseRule("p99:+5%")
	for _, spread := range []float64{0.03, 0.15} {
		aa := outcomes(auto, reps, n, spread, 1, 1)
		if pass := float64(aa[Pass]) / reps; pass < 0.95 || aa[Fail] > 0 {
			t.Errorf("spread %.2f, no change: auto passes %.1f%%, fails %d times; want about %.0f%% and none", spread, pass*100, aa[Fail], AutoPass*100)
		}
		noise := Noise{Trials: n, Spread: spread}
		level := RatioInterval(make8(1), make8(2), DefaultLevel).Level
		for _, c := range []struct {
			rule  Rule
			limit float64
		}{{auto, AutoLimit(noise, n, n, level, true)}, {fixed, 1.05}} {
			d := Detectable(c.limit, noise, n, n, level, DetectPower, true)
			got := outcomes(c.rule, reps, n, spread, d, 2)
			if fail := float64(got[Fail]) / reps; fail < 0.65 || fail > 0.93 {
				t.Errorf("spread %.2f, %s at its detectable change x%.3f: fails %.1f%%, want about %.0f%%", spread, c.rule.Text, d, fail*100, DetectPower*100)
			}
		}
	}
}

func make8(v float64) []float64 {
	out := make([]float64, 8)
	for i := range out {
		out[i] = v + float64(i)/100
	}
	return out
}

// TrialsFor is the least count at which the change is detectable: one
// trial fewer is not enough (unless the minimum binds).
func TestTrialsForIsTheLeastCount(t *testing.T) {
	for _, c := range []struct {
		spread, change, limit float64
		auto, increase        bool
	}{
		{0.15, 1.10, 1.05, false, true},
		{0.15, 1.25, 0, true, true},
		{0.03, 1.10, 0, true, true},
		{0.002, 1.05, 0, true, true}, // the floor binds
		{0.05, 0.90, 0.95, false, false},
	} {
		noise := Noise{Spread: c.spread}
		k, ok := TrialsFor(noise, c.change, c.limit, c.auto, DetectPower, c.increase)
		if !ok {
			t.Errorf("%+v: no count", c)
			continue
		}
		detects := func(k int) bool {
			limit, level := c.limit, RankLevel(k, k)
			if c.auto {
				limit = AutoLimit(noise, k, k, level, c.increase)
			}
			d := Detectable(limit, noise, k, k, level, DetectPower, c.increase)
			if c.increase {
				return d <= c.change
			}
			return d >= c.change
		}
		if !detects(k) || k > MinPlanTrials && detects(k-1) {
			t.Errorf("%+v: TrialsFor %d is not the least count that detects it", c, k)
		}
	}
	if _, ok := TrialsFor(Noise{Spread: 0.1}, 1.04, 1.05, false, DetectPower, true); ok {
		t.Error("a change within a fixed limit got a trial count")
	}
	if _, ok := TrialsFor(Noise{Spread: 0.1}, 1.005, 0, true, DetectPower, true); ok {
		t.Error("a change within the auto floor got a trial count")
	}
}

func TestParseAutoAndDetect(t *testing.T) {
	rules, err := ParseGate("auto")
	if err != nil || len(rules) != 4 || !rules[0].Auto || !rules[0].Increase || rules[0].Limit != 0 || rules[3].Auto {
		t.Fatalf("auto gate: %+v, %v", rules, err)
	}
	if r, err := ParseGate("qps:auto"); err != nil || !r[0].Auto || r[0].Increase {
		t.Errorf("qps:auto fails on drops: %+v, %v", r, err)
	}
	if r, err := ParseGate(" Default "); err != nil || len(r) != 4 || r[0].Limit != 1.05 {
		t.Errorf("named default gate: %+v, %v", r, err)
	}
	for _, bad := range []string{"errors:auto", "added-p99:auto", "p99:automatic"} {
		if _, err := ParseGate(bad); err == nil {
			t.Errorf("ParseGate(%q) accepted", bad)
		}
	}
	if d, err := ParseDetect("p99:+10%, qps:-5%"); err != nil || len(d) != 2 || d[0].Limit != 1.1 || d[1].Increase {
		t.Errorf("ParseDetect: %+v, %v", d, err)
	}
	for _, bad := range []string{"", "p99:auto", "errors:0", "p99"} {
		if _, err := ParseDetect(bad); err == nil {
			t.Errorf("ParseDetect(%q) accepted", bad)
		}
	}
}

// Compare with auto rules: the limit is the row's own, the no-mesh
// baseline is reported but not gated, and a regression far beyond the
// noise fails.
func TestAutoGate(t *testing.T) {
	rules, _ := ParseGate("auto")
	const row = "meshbench/sidecar@1000"
	same := Compare("a", synthetic(1, 8, 2.0, 0.02), "b", synthetic(2, 8, 2.0, 0.02), rules, 1)
	if o := verdict(t, same, row, "p99:auto"); o != Pass {
		t.Errorf("no change, 2%% noise: %s, want pass", o)
	}
	for _, r := range same.Rows {
		for _, v := range r.Verdicts {
			switch {
			case r.Mode == BaselineMode && v.Rule != "errors:0" && (v.Outcome != NotApplicable || !strings.Contains(v.Detail, "do not gate the no-mesh baseline")):
				t.Errorf("baseline %s: %s (%s)", v.Rule, v.Outcome, v.Detail)
			case r.Mode != BaselineMode && v.Rule != "errors:0" && (v.Limit <= 1.01 || v.Detectable <= v.Limit || !strings.Contains(v.Detail, "(auto: base spread")):
				t.Errorf("%s: limit x%g, detectable x%g (%s)", v.Rule, v.Limit, v.Detectable, v.Detail)
			}
		}
	}
	if same.Outcome != Pass {
		t.Errorf("no change: gate %s, want pass", same.Outcome)
	}
	worse := Compare("a", synthetic(1, 8, 2.0, 0.02), "b", synthetic(3, 8, 2.4, 0.02), rules, 1)
	if o := verdict(t, worse, row, "p99:auto"); o != Fail || worse.Outcome != Fail {
		t.Errorf("20%% worse in 2%% noise: %s (gate %s), want fail", o, worse.Outcome)
	}
}

func TestPlan(t *testing.T) {
	gate, _ := ParseGate("p99:+5%,p50:auto,errors:0")
	detect, _ := ParseDetect("p99:+10%,p99:+3%,p50:+10%,qps:-5%")
	p := Plan("run", synthetic(1, 8, 2.0, 0.1), gate, detect)
	if len(p.Rows) != 1 || p.Rows[0].Key != "meshbench/sidecar@1000" || len(p.Skipped) != 1 {
		t.Fatalf("rows %+v, skipped %v", p.Rows, p.Skipped)
	}
	rules := p.Rows[0].Rules
	if len(rules) != 2 || rules[0].Rule != "p99:+5%" || rules[1].Rule != "p50:auto" {
		t.Fatalf("rules %+v", rules)
	}
	p99 := rules[0]
	if !(p99.Spread > 0.05 && p99.Spread < 0.2) || p99.Limit != 1.05 || !(p99.Detectable > 1.05) || len(p99.Needs) != 2 {
		t.Errorf("p99 rule: %+v", p99)
	}
	if p99.Needs[0].Trials <= 8 || p99.Needs[1].Trials != 0 || !strings.Contains(p99.Needs[1].Note, "never fails") {
		t.Errorf("p99 needs: %+v", p99.Needs)
	}
	if len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "qps:-5%") {
		t.Errorf("notes %v", p.Notes)
	}
	var b strings.Builder
	if err := p.WriteText(&b); err != nil || !strings.Contains(b.String(), "p99:+10%: ") || !strings.Contains(b.String(), "no-mesh baseline") {
		t.Errorf("text: %v\n%s", err, b.String())
	}
}

// RankLevel is the level compare's interval reaches for those counts.
func TestRankLevelIsTheIntervalsLevel(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	for _, n := range []int{3, 4, 5, 8, 12, 60} {
		a, b := lognormal(rng, n, 1, 0.1), lognormal(rng, n, 1, 0.1)
		if got, want := RankLevel(n, n), RatioInterval(a, b, DefaultLevel).Level; math.Abs(got-want) > 1e-12 {
			t.Errorf("%d a side: RankLevel %.4f, the interval's level %.4f", n, got, want)
		}
	}
}
