package reports

import (
	"strings"
	"testing"

	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/scenarios"
)

func trial(mesh, mode string, n int, p50, p99, proxyCPU float64) *results.Trial {
	t := &results.Trial{Mesh: mesh, Mode: mode, Trial: n, Achieved: 1000, Requests: 10000,
		LatencyMs: results.Latency{P50: p50, P90: p50 * 1.2, P99: p99, P999: p99 * 1.5, Max: p99 * 2}}
	if proxyCPU > 0 {
		t.Components = []results.Usage{
			{Name: "a", Class: results.ClassProxy, CPUMillicores: proxyCPU / 2, RSSMaxMB: 10},
			{Name: "b", Class: results.ClassProxy, CPUMillicores: proxyCPU / 2, RSSMaxMB: 12},
			{Name: "client", Class: results.ClassLoadGen, CPUMillicores: 500, RSSMaxMB: 30},
		}
	}
	return t
}

func TestSummarizePairsTrialsWithTheirBaseline(t *testing.T) {
	trials := []*results.Trial{
		// The sidecar comes first in trial 1: rows must still put the baseline first.
		trial("meshbench", "sidecar", 1, 0.5, 2.0, 200),
		trial("none", "baseline", 1, 0.2, 1.0, 0),
		trial("none", "baseline", 2, 0.3, 5.0, 0), // a noisy trial for both
		trial("meshbench", "sidecar", 2, 0.7, 6.0, 220),
		trial("none", "baseline", 3, 0.2, 1.0, 0),
		trial("meshbench", "sidecar", 3, 0.4, 1.5, 180),
	}
	rows := Summarize(trials)
	if len(rows) != 2 || rows[0].Key() != "none/baseline" || rows[1].Key() != "meshbench/sidecar" {
		t.Fatalf("rows = %v, %v", rows[0].Key(), rows[1].Key())
	}
	sc := rows[1]
	// Per-trial differences: p50 0.3, 0.4, 0.2 -> median 0.3; p99 1.0, 1.0, 0.5 -> 1.0.
	if !near(sc.AddedP50Ms, 0.3) || !near(sc.AddedP99Ms, 1.0) || !sc.HasBaseline {
		t.Errorf("added p50 %.3f p99 %.3f, want 0.3 and 1.0", sc.AddedP50Ms, sc.AddedP99Ms)
	}
	if sc.LatencyMs.P50 != 0.5 || sc.Trials != 3 || sc.Requests != 30000 {
		t.Errorf("sidecar row = %+v", sc)
	}
	// The baseline trials here carry no components: +CPU is all of the
	// sidecar trials' processes (2 proxies, 200m in all, plus the client's 500m).
	if sc.AddedCPU != 700 {
		t.Errorf("added CPU %.0f, want 700", sc.AddedCPU)
	}
	if sc.Proxies != 2 || sc.ProxyCPU != 200 || sc.ProxyRSSMB != 22 {
		t.Errorf("proxy usage = %d proxies, %.0fm, %.0fMB; want 2, 200m, 22MB", sc.Proxies, sc.ProxyCPU, sc.ProxyRSSMB)
	}
	var sb strings.Builder
	if err := WriteTable(&sb, &results.Manifest{HistogramResolution: "0.5% log-spaced buckets"}, rows); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"+300us", "+1.00ms", "200m", "22.0MB", "every request, 0.5% log-spaced buckets"} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, sb.String())
		}
	}
	// Faults are named with when they start and how long they last.
	fsc, err := scenarios.Parse("f.yaml", []byte(`apiVersion: meshbench/v1
name: f
meshes: [{name: meshbench, mode: sidecar}]
load: {qps: 10, duration: 10s}
seed: 7
faults:
  - {at: 2s, apiVersion: chaos-mesh.org/v1alpha1, kind: NetworkChaos, metadata: {name: cut},
     spec: {action: partition, mode: all, selector: {labelSelectors: {app: server}}, duration: 3s}}
`))
	if err != nil {
		t.Fatal(err)
	}
	sb.Reset()
	if err := WriteTable(&sb, &results.Manifest{Scenario: fsc}, rows); err != nil {
		t.Fatal(err)
	}
	if want := "Faults in every trial (seed 7): NetworkChaos/cut at 2s for 3s;"; !strings.Contains(sb.String(), want) {
		t.Errorf("table lacks %q:\n%s", want, sb.String())
	}
	// Results written before meshbench kept its own histogram say fortio's.
	sb.Reset()
	if err := WriteTable(&sb, &results.Manifest{HistogramResolution: "10us"}, rows); err != nil {
		t.Fatal(err)
	}
	if want := "fortio histogram, 10us buckets"; !strings.Contains(sb.String(), want) {
		t.Errorf("table of older results lacks %q:\n%s", want, sb.String())
	}
}

func TestSummarizeWithoutBaseline(t *testing.T) {
	rows := Summarize([]*results.Trial{trial("meshbench", "sidecar", 1, 0.5, 2, 100)})
	if rows[0].HasBaseline {
		t.Error("HasBaseline without a baseline trial")
	}
	var sb strings.Builder
	if err := WriteTable(&sb, nil, rows); err != nil {
		t.Fatal(err)
	}
	// +P50, +P99 and +CPU are the 12th to 14th columns of the row.
	lines := strings.Split(strings.TrimSpace(sb.String()), "\n")
	f := strings.Fields(lines[1])
	if len(f) < 14 || f[11] != "-" || f[12] != "-" || f[13] != "-" {
		t.Errorf("without a baseline, +P50/+P99/+CPU should print as '-':\n%s", sb.String())
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		in := append([]float64(nil), c.in...)
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
		for i := range in {
			if in[i] != c.in[i] {
				t.Errorf("Median modified its input")
			}
		}
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// TestSharedNodes: a shared node's per-node proxy is set beside the same
// pods' sidecars, per data plane, with medians over trials.
func TestSharedNodes(t *testing.T) {
	sc, err := scenarios.Parse("s.yaml", []byte(`apiVersion: meshbench/v1
name: s
topology:
  services:
    - {name: front, calls: [a, b]}
    - {name: a, node: shared}
    - {name: b, node: shared}
meshes:
  - {name: meshbench, mode: sidecar}
  - {name: meshbench, mode: per-node}
  - {name: meshbench, mode: per-node, as: meshbench-l4, proxy: {layer: l4}}
  - {name: meshbench, mode: per-node, as: meshbench-wp, proxy: {layer: l4, waypoint: true}}
load: {qps: 10, duration: 10s}
`))
	if err != nil {
		t.Fatal(err)
	}
	proxy := func(node string, cpu, wss float64) results.Usage {
		return results.Usage{Name: node + "-p", Node: node, Class: results.ClassProxy, CPUMillicores: cpu, WorkingSetMaxMB: wss, RSSMaxMB: 2 * wss}
	}
	var trials []*results.Trial
	for n, f := range []float64{1, 3, 2} { // medians are the trial with factor 2
		side := trial("meshbench", "sidecar", n+1, 1, 2, 0)
		side.Components = []results.Usage{proxy("front", 90*f, 9), proxy("a", 30*f, 10), proxy("b", 50*f, 10)}
		node := trial("meshbench", "per-node", n+1, 1, 2, 0)
		node.Components = []results.Usage{proxy("front", 90*f, 9), proxy("shared", 40*f, 12)}
		l4 := trial("meshbench-l4", "per-node", n+1, 1, 2, 0)
		l4.Components = []results.Usage{proxy("front", 90*f, 9), proxy("shared", 20*f, 4)}
		wp := trial("meshbench-wp", "per-node", n+1, 1, 2, 0)
		wp.Components = []results.Usage{proxy("front", 90*f, 9), proxy("shared", 20*f, 4), proxy("shared", 30*f, 5), proxy("shared", 30*f, 5)}
		trials = append(trials, side, node, l4, wp)
	}
	var sb strings.Builder
	if err := WriteTable(&sb, &results.Manifest{Scenario: sc}, Summarize(trials)); err != nil {
		t.Fatal(err)
	}
	want := "Shared node shared (2 pods: a, b): meshbench's node proxy 80m CPU, 12.0MB working set; the same pods' 2 meshbench sidecars 160m, 20.0MB (0.50x CPU, 0.60x memory)."
	if !strings.Contains(sb.String(), want) {
		t.Errorf("table lacks %q:\n%s", want, sb.String())
	}
	// A variant's node proxy is set against its base mesh's sidecars.
	if l4 := "meshbench-l4's node proxy 40m CPU, 4.0MB working set; the same pods' 2 meshbench sidecars 160m, 20.0MB (0.25x CPU, 0.20x memory)."; !strings.Contains(sb.String(), l4) {
		t.Errorf("table lacks %q:\n%s", l4, sb.String())
	}
	// Waypoints on the node are counted with its node proxy, and said to be.
	if wp := "meshbench-wp's 3 proxies there (node proxy and waypoints) 160m CPU, 14.0MB working set; the same pods' 2 meshbench sidecars 160m, 20.0MB (1.00x CPU, 0.70x memory)."; !strings.Contains(sb.String(), wp) {
		t.Errorf("table lacks %q:\n%s", wp, sb.String())
	}
	var md, page strings.Builder
	r := NewReport(&results.Manifest{Scenario: sc}, trials, nil, 1)
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), want) || !strings.Contains(page.String(), strings.ReplaceAll(want, "'", "&#39;")) {
		t.Errorf("the Markdown or HTML report lacks %q:\n%s\n%s", want, md.String(), page.String())
	}
}
