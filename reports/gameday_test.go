package reports

import (
	"bytes"
	"strings"
	"testing"

	"github.com/meshbench/meshbench/runner/results"
)

// TestGameDays folds verdicts per row: a row passes only when every trial
// did; the score is the median; each format says so, and JUnit has one
// case per probe and row, failing where the probe failed.
func TestGameDays(t *testing.T) {
	verdict := func(pass bool, score, pct float64, detect float64) *results.Verdict {
		p := results.ProbeResult{Name: "success", Mode: "continuous", Judged: 10, SuccessPct: pct, Pass: pass}
		if !pass {
			p.Failed, p.Reason = 2, "2 of 10 seconds below 99%"
		}
		return &results.Verdict{Pass: pass, Score: score, Probes: []results.ProbeResult{p},
			Faults: []results.FaultImpact{{Name: "PodChaos/kill", DetectS: detect, RecoverS: 1}}}
	}
	var trials []*results.Trial
	for i, v := range []*results.Verdict{verdict(true, 100, 100, -1), verdict(true, 100, 100, -1), verdict(true, 100, 100, -1)} {
		tr := trial("none", "baseline", i+1, 1, 2, 0)
		tr.Verdict = v
		trials = append(trials, tr)
	}
	for i, v := range []*results.Verdict{verdict(true, 100, 100, -1), verdict(false, 80, 80, 0), verdict(false, 70, 70, 1)} {
		tr := trial("meshbench", "sidecar", i+1, 1, 2, 10)
		tr.Verdict = v
		trials = append(trials, tr)
	}
	r := NewReport(nil, trials, nil, 1)
	if len(r.GameDays) != 2 {
		t.Fatalf("game days %+v, want two rows", r.GameDays)
	}
	base, side := r.GameDays[0], r.GameDays[1]
	if !base.Pass() || base.Score != 100 || base.Faults[0].Detected != 0 || base.Faults[0].DetectS != -1 {
		t.Errorf("baseline row %+v", base)
	}
	if side.Pass() || side.Passed != 1 || side.Score != 80 || side.Probes[0].Failed != 2 || side.Probes[0].SuccessPct != 80 ||
		side.Probes[0].Reason != "trial 2: 2 of 10 seconds below 99%" || side.Faults[0].Detected != 2 || side.Faults[0].DetectS != 0.5 {
		t.Errorf("sidecar row %+v", side)
	}
	if !r.Failed() {
		t.Errorf("a failed game day does not fail the report")
	}
	var text, md, junit bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJUnit(&junit); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]string{
		text.String(): {"Game day:", "meshbench/sidecar@0", "FAIL (2 of 3 trials)", "80.0%", "success (continuous) failed in 2 of 3: trial 2",
			"PodChaos/kill: detected in 2/3, 0.5s, recovered in 3/3, 1.0s after"},
		md.String(): {"| none/baseline@0 | ✅ pass | 100.0% | - | PodChaos/kill: never detected, recovered in 3/3, 1.0s after |",
			"| meshbench/sidecar@0 | ❌ fail (2 of 3 trials) | 80.0% |"},
		junit.String(): {`<testcase name="probe success (continuous)" classname="none/baseline@0">`,
			`<testcase name="probe success (continuous)" classname="meshbench/sidecar@0">`, `held in 1 of 3 trials, median success 80.0%`},
	} {
		for _, w := range want {
			if !strings.Contains(name, w) {
				t.Errorf("output lacks %q:\n%s", w, name)
			}
		}
	}
	// A Schedule's firings fold into one fault.
	for _, tr := range trials {
		tr.Verdict.Faults = []results.FaultImpact{{Name: "Schedule/kill/firing-1", DetectS: 0, RecoverS: 1}, {Name: "Schedule/kill/firing-2", DetectS: -1, RecoverS: 0}}
	}
	if f := SummarizeGameDays(GroupTrials(trials))[0].Faults; len(f) != 1 || f[0].Name != "Schedule/kill" || f[0].Trials != 6 || f[0].Detected != 3 {
		t.Errorf("firings folded into %+v, want one fault of 6 actions, 3 detected", f)
	}
	var sum bytes.Buffer
	WriteVerdicts(&sum, trials[:1])
	if !strings.Contains(sum.String(), "Schedule/kill: 2 firings, 1 detected (at most 0.0s), 2 recovered from (at most 1.0s after)") {
		t.Errorf("run summary: %s", sum.String())
	}
	// The failing case is a failure, the passing one is not.
	if n := strings.Count(junit.String(), "<failure"); n != 1 {
		t.Errorf("%d failures in JUnit, want 1 (the sidecar's probe):\n%s", n, junit.String())
	}
}
