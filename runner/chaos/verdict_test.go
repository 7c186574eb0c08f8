package chaos

import (
	"math"
	"testing"
	"time"

	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/scenarios"
)

func TestJudge(t *testing.T) {
	// 8 seconds at 100 requests; a fault from 2 to 4 s fails half the
	// requests of seconds 2 and 3 and slows second 4 (p99 300 ms).
	var series []results.Second
	for k := 0; k < 8; k++ {
		s := results.Second{Start: float64(k), Requests: 100, P50Ms: 1, P99Ms: 2}
		switch k {
		case 2, 3:
			s.Errors = 50
		case 4:
			s.P99Ms = 300
		}
		series = append(series, s)
	}
	faults := []results.Fault{{Name: "NetworkChaos/cut", Start: 2.01, End: 4.02}}
	probes := []scenarios.Probe{
		{Name: "available", Type: scenarios.ProbeSuccessRate, Mode: scenarios.ProbeContinuous, Min: 99, Weight: 2},
		{Name: "fast", Type: scenarios.ProbeLatency, Mode: scenarios.ProbeOnChaos, Percentile: 99, Max: scenarios.Duration(100 * time.Millisecond), Weight: 1},
		{Name: "before", Type: scenarios.ProbeSuccessRate, Mode: scenarios.ProbeStart, Min: 99, Weight: 1},
		{Name: "after", Type: scenarios.ProbeLatency, Mode: scenarios.ProbeEnd, Percentile: 50, Max: scenarios.Duration(10 * time.Millisecond), Weight: 1},
	}
	v := Judge(probes, Observed{Series: series}, faults)
	want := map[string][2]int{ // judged, failed
		"available": {8, 2}, // seconds 2, 3
		"fast":      {3, 1}, // seconds 2, 3, 4 overlap the fault; 4 is slow
		"before":    {2, 0}, // seconds 0 and 1, which end before 2.01
		"after":     {3, 0}, // seconds 5, 6, 7 (the fault ends at 4.02)
	}
	if len(v.Probes) != 4 {
		t.Fatalf("probes %+v", v.Probes)
	}
	for _, r := range v.Probes {
		w := want[r.Name]
		if r.Judged != w[0] || r.Failed != w[1] {
			t.Errorf("%s: judged %d failed %d, want %d and %d", r.Name, r.Judged, r.Failed, w[0], w[1])
		}
	}
	if v.Pass || v.Probes[0].Pass || !v.Probes[2].Pass || !v.Probes[3].Pass {
		t.Errorf("verdict %+v: want a fail, from available and fast", v)
	}
	// (2*75 + 66.67 + 100 + 100) / 5
	if wantScore := (2*75 + 100*2.0/3 + 100 + 100) / 5; v.Score < wantScore-0.01 || v.Score > wantScore+0.01 {
		t.Errorf("score %.2f, want %.2f", v.Score, wantScore)
	}
	im := v.Faults[0]
	// Detected in second 2 (0 s after its start, rounded to the second's
	// start); recovered in second 5 (0.98 s after its end).
	if im.DetectS != 0 || im.RecoverS < 0.97 || im.RecoverS > 0.99 {
		t.Errorf("impact %+v, want detect 0 and recover 0.98", im)
	}
	// A fixed-rate load's seconds that stalled fail: second 6 answered
	// 40 of 100 requests due, 7 none; the last second, cut by the
	// window's end, is not a stall.
	stalled := append([]results.Second(nil), series...)
	stalled[6].Requests, stalled[7].Requests = 40, 0
	stalled = append(stalled, results.Second{Start: 8, Requests: 10})
	v = Judge(probes[:1], Observed{Series: stalled, Rate: 100, Window: 8.5}, faults)
	if r := v.Probes[0]; r.Judged != 9 || r.Failed != 4 {
		t.Errorf("with stalls: judged %d failed %d, want 9 and 4 (seconds 2, 3, 6, 7)", r.Judged, r.Failed)
	}
	// A client stalled to the window's end sent nothing more: the series
	// stops at second 5, and seconds 6 and 7 of an 8 s window stalled.
	v = Judge(probes[:1], Observed{Series: series[:6], Rate: 100, Window: 8}, faults)
	if r := v.Probes[0]; r.Judged != 8 || r.Failed != 4 {
		t.Errorf("stalled to the end: judged %d failed %d, want 8 and 4 (seconds 2, 3, 6, 7)", r.Judged, r.Failed)
	}
	// A tolerance lets a probe fail some seconds.
	probes[0].Tolerance = 30
	if v := Judge(probes[:1], Observed{Series: series}, faults); !v.Pass || v.Probes[0].Reason != "" {
		t.Errorf("with a 30%% tolerance: %+v", v)
	}
}

// TestJudgeActiveProbes: an active probe judges the seconds with a reading
// of it, a second failing when any of its readings did; a probe that
// cannot judge the row counts in neither the verdict nor the score.
func TestJudgeActiveProbes(t *testing.T) {
	var series []results.Second
	var readings []results.ProbeReading
	for k := 0; k < 6; k++ {
		series = append(series, results.Second{Start: float64(k), Requests: 100})
		readings = append(readings, results.ProbeReading{Probe: "healthz", At: float64(k) + 0.3, OK: k != 3})
	}
	// A second reading in second 4 that failed; none in second 5 for
	// "script".
	readings = append(readings, results.ProbeReading{Probe: "healthz", At: 4.9, OK: false},
		results.ProbeReading{Probe: "script", At: 0.5, OK: true}, results.ProbeReading{Probe: "script", At: 4.5, OK: true})
	probes := []scenarios.Probe{
		{Name: "healthz", Type: scenarios.ProbeHTTP, Mode: scenarios.ProbeContinuous, Weight: 1},
		{Name: "script", Type: scenarios.ProbeCommand, Mode: scenarios.ProbeEnd, Weight: 1},
		{Name: "errors", Type: scenarios.ProbePrometheus, Mode: scenarios.ProbeContinuous, Weight: 5},
	}
	faults := []results.Fault{{Name: "PodChaos/kill", Start: 3, End: 3}}
	// A reading after the window (at 6.2 s of 6) is not judged.
	readings = append(readings, results.ProbeReading{Probe: "healthz", At: 6.2, OK: false})
	v := Judge(probes, Observed{Series: series, Window: 6, Readings: readings, NotApplicable: map[string]string{"errors": "no proxies"}}, faults)
	h, sc, na := v.Probes[0], v.Probes[1], v.Probes[2]
	if h.Judged != 6 || h.Failed != 2 || h.Pass {
		t.Errorf("healthz %+v: want 6 seconds judged, 3 and 4 failed", h)
	}
	if sc.Judged != 1 || sc.Failed != 0 || !sc.Pass {
		t.Errorf("script %+v: want second 4 alone judged (after the kill), held", sc)
	}
	if !na.NotApplicable || na.Reason != "no proxies" || na.Pass {
		t.Errorf("errors %+v: want not applicable", na)
	}
	if want := (100*4.0/6 + 100) / 2; math.Abs(v.Score-want) > 0.01 || v.Pass {
		t.Errorf("verdict %+v: want a fail scored %.2f (the inapplicable probe left out)", v, want)
	}
	if im := v.Faults[0]; im.DetectS != 0 || im.RecoverS != 1 {
		t.Errorf("impact %+v: want detected at once, recovered in second 5", im)
	}
	// A row no probe can judge has no verdict, rather than a pass.
	if v := Judge(probes[2:], Observed{Series: series, NotApplicable: map[string]string{"errors": "no proxies"}}, faults); v != nil {
		t.Errorf("every probe n/a: verdict %+v, want none", v)
	}
}
