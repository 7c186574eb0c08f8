package main

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/meshbench/meshbench/reports"
	"github.com/meshbench/meshbench/runner/results"
)

func trialsOf(p99s ...float64) []*results.Trial {
	var out []*results.Trial
	for i, p := range p99s {
		for _, mm := range [][2]string{{"none", "baseline"}, {"meshbench", "sidecar"}} {
			t := &results.Trial{Mesh: mm[0], Mode: mm[1], Trial: i + 1, Requested: 1000, Achieved: 1000, Requests: 3000}
			t.LatencyMs.P50, t.LatencyMs.P99 = 0.1, 0.3
			if mm[1] == "sidecar" {
				t.LatencyMs.P50, t.LatencyMs.P99 = 0.25, p
			}
			out = append(out, t)
		}
	}
	return out
}

// TestScaledTouchesOnlyTheRow: the synthetic regression adds half the
// row's median p99 (1.5 ms of 1, 1.5 and 2) to the row's p99s and nothing
// else, and leaves the A run itself unchanged.
func TestScaledTouchesOnlyTheRow(t *testing.T) {
	a := trialsOf(1, 1.5, 2)
	s := scaled(a, "meshbench/sidecar@1000", "p99", 1.5)
	for i := range a {
		want := a[i].LatencyMs.P99
		if a[i].Mode == "sidecar" {
			want += 0.75
		}
		if s[i].LatencyMs.P99 != want || s[i].LatencyMs.P50 != a[i].LatencyMs.P50 {
			t.Errorf("trial %d %s: p99 %v p50 %v, want %v %v", i, a[i].Mode, s[i].LatencyMs.P99, s[i].LatencyMs.P50, want, a[i].LatencyMs.P50)
		}
	}
	if a[1].LatencyMs.P99 != 1 {
		t.Errorf("the A run was modified: %v", a[1].LatencyMs.P99)
	}
}

// TestScaledRegressionFailsTheGate: 8 trials a side with ±10% noise, the
// candidate's p99 doubled: the p99 rule fails; unscaled it is inconclusive
// (the interval around 1 reaches past +5%); scaled down by half it passes.
func TestScaledRegressionFailsTheGate(t *testing.T) {
	base := trialsOf(1.0, 1.1, 0.9, 1.05, 0.95, 1.02, 0.98, 1.01)
	rules, err := reports.ParseGate("p99:+5%")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		factor float64
		want   reports.Outcome
	}{{2, reports.Fail}, {1, reports.Inconclusive}, {0.5, reports.Pass}} {
		c := reports.Compare("a", base, "b", scaled(base, "meshbench/sidecar@1000", "p99", tc.factor), rules, reports.DefaultSeed)
		var got reports.Outcome
		for _, r := range c.Rows {
			if r.Key == "meshbench/sidecar@1000" && len(r.Verdicts) > 0 {
				got = r.Verdicts[0].Outcome
			}
		}
		if got != tc.want {
			t.Errorf("p99 x%v: %q, want %q", tc.factor, got, tc.want)
		}
	}
}

// TestScaledCPU: a CPU regression raises the system under test's CPU
// (apps and proxies, not the load generator) by the factor times its
// median, spread over its components.
func TestScaledCPU(t *testing.T) {
	a := trialsOf(1, 1, 1)
	for i, tr := range a {
		tr.Components = []results.Usage{{Class: results.ClassApp, CPUMillicores: 100 + float64(i)}, {Class: results.ClassProxy, CPUMillicores: 100},
			{Class: results.ClassLoadGen, CPUMillicores: 500}}
	}
	s := scaled(a, "meshbench/sidecar@1000", "cpu", 1.1)
	for i := range a {
		want := sutCPU(a[i])
		if a[i].Mode == "sidecar" {
			want += 20.3 // a tenth of the median, 203m
		}
		if got := sutCPU(s[i]); got < want-1e-9 || got > want+1e-9 || s[i].Components[2].CPUMillicores != 500 {
			t.Errorf("trial %d %s: cpu %v, want %v; load generator %v", i, a[i].Mode, got, want, s[i].Components[2].CPUMillicores)
		}
	}
	if a[3].Components[0].CPUMillicores != 103 {
		t.Errorf("the A run was modified: %v", a[3].Components)
	}
}

func TestTenPercentDelay(t *testing.T) {
	dir := t.TempDir()
	for _, tr := range trialsOf(1.2, 1.6, 1.4) {
		if err := results.WriteJSON(dir+"/"+tr.Dir()+"/"+results.TrialFile, tr); err != nil {
			t.Fatal(err)
		}
	}
	d, err := tenPercentDelay(dir, "meshbench/sidecar@1000")
	if err != nil || d != 140*time.Microsecond {
		t.Fatalf("delay %v, %v; want 140µs (a tenth of the median p99 1.4 ms)", d, err)
	}
	if _, err := tenPercentDelay(dir, "haproxy/sidecar@1000"); err == nil {
		t.Error("no error for a row with no trials")
	}
}

// stepFound on runs that barely differ: a doubling halfway is found in
// every drawn series and nothing is found without it; historyStats runs
// through on such runs.
func TestStepFound(t *testing.T) {
	values := []float64{1, 1.01, 0.99, 1.02, 0.98}
	rng := rand.New(rand.NewPCG(1, 2))
	o := reports.DefaultChangeOptions
	if got := stepFound(rng, values, 2, o, true); got != 1 {
		t.Errorf("a doubling found in %.1f%% of series, want all", got*100)
	}
	if got := stepFound(rng, values, 1, o, false); got > 0.05 {
		t.Errorf("no step: a change point in %.1f%% of series", got*100)
	}
	var a [][]*results.Trial
	for i := range 5 {
		f := 1 + float64(i%3)/50
		a = append(a, trialsOf(f, 1.1*f, 0.9*f, f))
	}
	rules, _ := reports.ParseGate("auto")
	if err := historyStats(a, rules, "meshbench/sidecar@1000", "p99,p50", "1.1,2"); err != nil {
		t.Fatal(err)
	}
}

// pairedStats runs through runs with candidate rows, and says so when
// there are none.
func TestPairedStats(t *testing.T) {
	var a [][]*results.Trial
	for i := range 3 {
		f := 1 + float64(i)/10
		trials := trialsOf(f, 1.2*f, 0.9*f, 1.1*f, f, 1.05*f)
		for _, tr := range trials {
			if tr.Mode == "sidecar" {
				c := *tr
				c.Mesh = "meshbench" + reports.CandidateSuffix
				c.LatencyMs.P99 *= 1.01
				trials = append(trials, &c)
			}
		}
		a = append(a, trials)
	}
	rules, _ := reports.ParseGate("auto")
	for _, runs := range [][][]*results.Trial{a, {trialsOf(1, 2)}} {
		if err := pairedStats(runs, rules, "meshbench/sidecar@1000", "p99,p50"); err != nil {
			t.Fatal(err)
		}
	}
}
