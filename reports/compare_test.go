package reports

import (
	"bytes"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fortio.org/fortio/stats"

	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/scenarios"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// synthetic builds n trials per (mesh, mode) with p99 drawn around the given
// centres (relative noise sd), reproducibly.
func synthetic(seed uint64, n int, sidecarP99, noise float64) []*results.Trial {
	rng := rand.New(rand.NewPCG(seed, 99))
	var out []*results.Trial
	for i := 1; i <= n; i++ {
		for _, mm := range []struct {
			mode string
			p99  float64
		}{{"baseline", 0.4}, {"sidecar", sidecarP99}} {
			f := 1 + noise*rng.NormFloat64()
			mesh := "none"
			if mm.mode != "baseline" {
				mesh = "meshbench"
			}
			t := trial(mesh, mm.mode, i, mm.p99/4*f, mm.p99*f, 0)
			t.Requested = 1000
			t.Components = []results.Usage{{Name: "server", Class: results.ClassApp, CPUMillicores: 100 * f, RSSMaxMB: 20}}
			if mm.mode != "baseline" {
				t.Components = append(t.Components, results.Usage{Name: "s", Class: results.ClassProxy, CPUMillicores: 150 * f, RSSMaxMB: 30})
			}
			out = append(out, t)
		}
	}
	return out
}

func verdict(t *testing.T, c *Comparison, key, rule string) Outcome {
	t.Helper()
	for _, r := range c.Rows {
		if r.Key != key {
			continue
		}
		for _, v := range r.Verdicts {
			if v.Rule == rule {
				return v.Outcome
			}
		}
	}
	t.Fatalf("no verdict for %s %s", key, rule)
	return ""
}

func TestGateVerdicts(t *testing.T) {
	rules, err := ParseGate("p99:+5%,qps:-5%,errors:0")
	if err != nil {
		t.Fatal(err)
	}
	base := synthetic(1, 8, 2.0, 0.01)
	const row = "meshbench/sidecar@1000"
	// Unchanged, tight noise: the interval sits inside the limit.
	if o := verdict(t, Compare("a", base, "b", synthetic(2, 8, 2.0, 0.01), rules, 1), row, "p99:+5%"); o != Pass {
		t.Errorf("no change: %s, want pass", o)
	}
	// 20% worse: the whole interval is beyond +5%.
	c := Compare("a", base, "b", synthetic(3, 8, 2.4, 0.01), rules, 1)
	if o := verdict(t, c, row, "p99:+5%"); o != Fail || c.Outcome != Fail {
		t.Errorf("20%% regression: %s (gate %s), want fail", o, c.Outcome)
	}
	if o := verdict(t, c, "none/baseline@1000", "p99:+5%"); o != Pass {
		t.Errorf("the unchanged baseline row: %s, want pass", o)
	}
	// 5% worse with 10% noise: the interval straddles the limit.
	if o := verdict(t, Compare("a", synthetic(4, 8, 2.0, 0.1), "b", synthetic(5, 8, 2.1, 0.1), rules, 1), row, "p99:+5%"); o != Inconclusive {
		t.Errorf("5%% change in 10%% noise: %s, want inconclusive", o)
	}
	// Errors are counted, not estimated.
	bad := synthetic(6, 8, 2.0, 0.01)
	bad[3].Errors = 2
	if o := verdict(t, Compare("a", base, "b", bad, rules, 1), row, "errors:0"); o != Fail {
		t.Errorf("2 errors under errors:0: %s", o)
	}
	// Too few trials for a 94% interval: no verdict either way.
	if o := verdict(t, Compare("a", synthetic(1, 3, 2.0, 0.01), "b", synthetic(3, 3, 3.0, 0.01), rules, 1), row, "p99:+5%"); o != Inconclusive {
		t.Errorf("3 against 3 trials: %s, want inconclusive", o)
	}
	// A metric one run lacks cannot pass: here the candidate has no CPU
	// figures.
	noCPU := synthetic(7, 8, 2.0, 0.01)
	for _, tr := range noCPU {
		tr.Components = nil
	}
	cpuRules, _ := ParseGate("cpu:+10%")
	if o := verdict(t, Compare("a", base, "b", noCPU, cpuRules, 1), row, "cpu:+10%"); o != Inconclusive {
		t.Errorf("cpu missing in the candidate: %s, want inconclusive", o)
	}
	// Nothing to gate (no fixed-rate rows, e.g. two max searches) is not a pass.
	if c := Compare("a", nil, "b", nil, rules, 1); c.Outcome != Inconclusive || c.Note == "" {
		t.Errorf("empty runs: gate %s (%q)", c.Outcome, c.Note)
	}
	// A row the candidate lacks cannot pass the gate.
	var onlyBaseline []*results.Trial
	for _, tr := range base {
		if tr.Mode == "baseline" {
			onlyBaseline = append(onlyBaseline, tr)
		}
	}
	if c := Compare("a", base, "b", onlyBaseline, rules, 1); c.Outcome != Inconclusive || c.Final(InconclusiveFail) != Fail || c.Final(InconclusivePass) != Pass {
		t.Errorf("missing row: gate %s", c.Outcome)
	}
}

func TestParseGate(t *testing.T) {
	rules, err := ParseGate(DefaultGate)
	if err != nil || len(rules) != 4 || rules[0].Limit != 1.05 || !rules[0].Increase || rules[3].Metric != "error-rate" || !rules[3].ErrorCount {
		t.Fatalf("default gate: %+v, %v", rules, err)
	}
	if r, err := ParseGate("qps:-10%, errors:0.5%"); err != nil || r[0].Limit != 0.9 || r[0].Increase || r[1].ErrorCount || r[1].Limit != 0.005 {
		t.Errorf("qps/error share: %+v, %v", r, err)
	}
	for _, bad := range []string{"", "p99", "p99:5%", "latency:+5%", "p99:+x%", "errors:many", "qps:-150%", "errors:nan", "p99:+NaN%", "added-p99:+5%", "p99:"} {
		if _, err := ParseGate(bad); err == nil {
			t.Errorf("ParseGate(%q) accepted", bad)
		}
	}
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run with -update after checking):\n%s", name, got)
	}
}

func TestCompareGoldenOutputs(t *testing.T) {
	rules, _ := ParseGate(DefaultGate)
	c := Compare("main", synthetic(1, 8, 2.0, 0.02), "pr-42", synthetic(2, 8, 2.4, 0.02), rules, DefaultSeed)
	for name, write := range map[string]func(*Comparison, *bytes.Buffer) error{
		"compare.md":        func(c *Comparison, b *bytes.Buffer) error { return c.WriteMarkdown(b, InconclusiveStays) },
		"compare.junit.xml": func(c *Comparison, b *bytes.Buffer) error { return c.WriteJUnit(b, InconclusiveStays) },
	} {
		var b bytes.Buffer
		if err := write(c, &b); err != nil {
			t.Fatal(err)
		}
		golden(t, name, b.Bytes())
	}
}

func reportFixture(t *testing.T) *Report {
	t.Helper()
	s, err := scenarios.LoadBuiltin("gate")
	if err != nil {
		t.Fatal(err)
	}
	s.SLOs = []string{"p99 < 2.2ms for sidecar", "errors == 0", "p50 < 1ms at 500 rps"}
	m := &results.Manifest{RunID: "abc123", Scenario: s, StartTime: time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC),
		Meshbench:    results.Build{Version: "v0.1.0", Commit: "deadbee", GoVersion: "go1.26.8"},
		Host:         results.Host{CPUs: 2, CPUModel: "test CPU", MemoryMB: 24000, Kernel: "6.1"},
		Platform:     results.Platform{Name: "local", Network: "netns"},
		Calibrations: []results.Calibration{{Requested: 1000, Achieved: 999, LatencyMs: results.Latency{P50: 0.1, P99: 0.3}}},
	}
	extra, _ := scenarios.ParseObjective("errors == 0") // also in the scenario: checked once
	return NewReport(m, synthetic(1, 8, 2.0, 0.05), []scenarios.Objective{extra}, DefaultSeed)
}

func TestReportGoldenOutputs(t *testing.T) {
	r := reportFixture(t)
	for name, write := range map[string]func(*bytes.Buffer) error{
		"report.md":        func(b *bytes.Buffer) error { return r.WriteMarkdown(b) },
		"report.junit.xml": func(b *bytes.Buffer) error { return r.WriteJUnit(b) },
	} {
		var b bytes.Buffer
		if err := write(&b); err != nil {
			t.Fatal(err)
		}
		golden(t, name, b.Bytes())
	}
	if !r.Failed() {
		t.Error("the unmatched objective (500 rps) should fail the report")
	}
}

// TestHTMLIsSelfContained checks the page fetches nothing: no external
// script, style, image or font reference.
func TestHTMLIsSelfContained(t *testing.T) {
	var b bytes.Buffer
	if err := reportFixture(t).WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, bad := range []string{"src=", "<link", "@import", "url(http", "href=\"http"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page references something external: %q", bad)
		}
	}
	for _, want := range []string{`id="percentiles-1000"`, `id="added-latency"`, `id="cpu"`, `id="memory"`, "Harness floor", "<h2>Environment</h2>", "<h2>Objectives</h2>"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
}

// TestPercentileCurveOfPooledTrials checks the curve drawn from pooled
// histograms whose edge buckets differ by trial: monotonic, and at the
// exact values where the data is exact.
func TestPercentileCurveOfPooledTrials(t *testing.T) {
	h1 := &stats.HistogramData{Count: 100, Min: 0.001, Max: 0.004, Data: []stats.Bucket{
		{Interval: stats.Interval{Start: 0.001, End: 0.002}, Count: 50}, {Interval: stats.Interval{Start: 0.002, End: 0.004}, Count: 50}}}
	h2 := &stats.HistogramData{Count: 100, Min: 0.0015, Max: 0.003, Data: []stats.Bucket{
		{Interval: stats.Interval{Start: 0.0015, End: 0.002}, Count: 50}, {Interval: stats.Interval{Start: 0.002, End: 0.003}, Count: 50}}}
	h := mergeHistograms(mergeHistograms(nil, h1), h2)
	if got := valueAt(h, 50); math.Abs(got-0.002) > 1e-9 {
		t.Errorf("p50 of pooled trials = %g, want 0.002 (half of each trial is below it)", got)
	}
	prev := 0.0
	for p := 0.0; p <= 100; p += 0.5 {
		v := valueAt(h, p)
		if v < prev || v < h.Min-1e-12 || v > h.Max+1e-12 {
			t.Fatalf("curve not monotonic within [min, max] at p%g: %g after %g", p, v, prev)
		}
		prev = v
	}
}

// TestBaselineMoveIsInconclusive: a slower no-mesh baseline (the machine
// or the harness changed, no proxy did) makes its latency rules
// inconclusive with the reason, never a failure of the gate; its error
// rules still fail.
func TestBaselineMoveIsInconclusive(t *testing.T) {
	rules, err := ParseGate("p99:+5%,errors:0")
	if err != nil {
		t.Fatal(err)
	}
	base := synthetic(1, 8, 2.0, 0.01)
	cand := synthetic(2, 8, 2.0, 0.01)
	for _, tr := range cand {
		if tr.Mode == BaselineMode {
			tr.LatencyMs.P99 *= 1.5
		}
	}
	c := Compare("a", base, "b", cand, rules, 1)
	if o := verdict(t, c, "none/baseline@1000", "p99:+5%"); o != Inconclusive {
		t.Errorf("baseline p99 x1.5: %s, want inconclusive", o)
	}
	for _, r := range c.Rows {
		if r.Mode == BaselineMode && !strings.Contains(r.Verdicts[0].Detail, "no-mesh baseline moved") {
			t.Errorf("detail %q does not say why", r.Verdicts[0].Detail)
		}
	}
	if o := verdict(t, c, "meshbench/sidecar@1000", "p99:+5%"); o != Pass {
		t.Errorf("unchanged sidecar: %s, want pass", o)
	}
	if c.Outcome != Inconclusive {
		t.Errorf("gate %s, want inconclusive", c.Outcome)
	}
	for _, tr := range cand {
		if tr.Mode == BaselineMode {
			tr.Errors = 3
		}
	}
	if o := verdict(t, Compare("a", base, "b", cand, rules, 1), "none/baseline@1000", "errors:0"); o != Fail {
		t.Errorf("errors in the baseline: %s, want fail", o)
	}
}

// TestTimelineCharts: a run with faults gets its window second by second,
// one line per (mesh, mode), with each fault's window shaded; the
// proxies' CPU and memory too, one line per row that has proxies.
func TestTimelineCharts(t *testing.T) {
	r := reportFixture(t)
	var keys []string
	proxied := 0
	for _, tr := range r.trials {
		if tr.Trial != 1 {
			continue
		}
		keys = append(keys, tr.Key())
		if tr.Mode != BaselineMode {
			proxied++
			sec := []results.UsageSecond{{Start: 0, CPUMillicores: 100, MemoryMB: 20}, {Start: 1, CPUMillicores: 40, MemoryMB: 21}}
			tr.Components = append(tr.Components,
				results.Usage{Name: "a-proxy", Class: results.ClassProxy, Seconds: sec},
				results.Usage{Name: "b-proxy", Class: results.ClassProxy, Seconds: sec})
		}
		tr.Faults = []results.Fault{{Name: "NetworkChaos/cut", Action: "NetworkChaos partition", Targets: []string{"server"}, Start: 1, End: 2, Executor: "iptables"}}
		tr.Series = []results.Second{{Start: 0, Requests: 100, P99Ms: 1}, {Start: 1, Requests: 4, P99Ms: 900, Errors: 3}, {Start: 2, Requests: 100, P99Ms: 1}}
	}
	var b bytes.Buffer
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if proxied == 0 || proxied == len(keys) {
		t.Fatalf("the fixture needs rows with and without proxies (%d of %d have them)", proxied, len(keys))
	}
	for id, lines := range map[string]int{`id="timeline-p99"`: len(keys), `id="timeline-errors"`: len(keys),
		`id="timeline-proxy-cpu"`: proxied, `id="timeline-proxy-memory"`: proxied} {
		i := strings.Index(page, id)
		if i < 0 {
			t.Fatalf("the page lacks %s", id)
		}
		chart := page[i : i+strings.Index(page[i:], "</svg>")]
		if n := strings.Count(chart, `class="fault"`); n != 1 {
			t.Errorf("%s: %d fault windows shaded, want 1", id, n)
		}
		if n := strings.Count(chart, `class="series"`); n != lines {
			t.Errorf("%s: %d lines, want %d", id, n, lines)
		}
	}
	// Two proxies' seconds are summed.
	if !strings.Contains(page, "second 0: 200 (2 proxies)") || !strings.Contains(page, "second 1: 42 (2 proxies)") {
		t.Errorf("the proxies' seconds are not summed per row")
	}
	if !strings.Contains(page, "NetworkChaos/cut: NetworkChaos partition on [server], 1.0-2.0s by iptables") {
		t.Errorf("the fault window's title is missing")
	}
}
