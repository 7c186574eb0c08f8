package smps

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/scenarios"
)

func TestTrialRoundTripsStrictly(t *testing.T) {
	s, err := scenarios.LoadBuiltin(scenarios.DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	m := &results.Manifest{RunID: "abc123", Scenario: s, HistogramResolution: "0.5% log-spaced buckets",
		Platform: results.Platform{Network: "netns"}}
	start := time.Date(2026, 11, 22, 1, 2, 3, 0, time.UTC)
	tr := &results.Trial{Mesh: "meshbench", Mode: "sidecar", Trial: 2, Start: start, End: start.Add(10 * time.Second),
		Requested: 1000, Achieved: 999.5, Connections: 8, Duration: "10s", Target: "http://127.0.0.1:15001/",
		Requests: 9995, LatencyMs: results.Latency{Min: 0.1, Mean: 0.5, P50: 0.4, P90: 0.6, P99: 1.2, P999: 3, Max: 4},
		Components: []results.Usage{{Name: "client-sidecar", Class: "proxy", CPUMillicores: 140, RSSMaxMB: 18, Source: "/proc"}},
		Verdict: &results.Verdict{Pass: false, Score: 83.25, Probes: []results.ProbeResult{{Name: "p99 under 5ms", SuccessPct: 66.5}},
			Faults: []results.FaultImpact{{Name: "NetworkChaos/cut", DetectS: 0, RecoverS: -1}}}}
	cfg, res := FromTrial(m, tr)
	dir := t.TempDir()
	for name, msg := range map[string]Message{"c.json": cfg, "r.json": res} {
		b, err := Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c2, err := ReadConfig(filepath.Join(dir, "c.json"))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := ReadResult(filepath.Join(dir, "r.json"))
	if err != nil {
		t.Fatal(err)
	}
	if c2.GetId() != "abc123-meshbench-sidecar-1000rps-2" || c2.GetClients()[0].GetRps() != 1000 || c2.GetLabels()[LabelScenario] != "default" {
		t.Errorf("config = %v", c2)
	}
	if r2.GetTestId() != c2.GetId() || r2.GetLatenciesMs().GetP99() != 1.2 || r2.GetLabels()[LabelP999Ms] != "3.000" ||
		r2.GetLabels()[LabelCPUPrefix+"client-sidecar"] != "140.000" || !r2.GetStartTime().AsTime().Equal(start) ||
		r2.GetLabels()[LabelGameDayPass] != "false" || r2.GetLabels()[LabelResilienceScore] != "83.250" ||
		r2.GetLabels()[LabelProbeSuccessPrefix+"p99_under_5ms"] != "66.500" ||
		r2.GetLabels()[LabelFaultDetectPrefix+"NetworkChaos.cut"] != "0.000" || r2.GetLabels()[LabelFaultRecoverPrefix+"NetworkChaos.cut"] != "-1.000" {
		t.Errorf("result = %v", r2)
	}
	// The figures come back from the result alone.
	back, err := TrialFromResult(r2)
	if err != nil {
		t.Fatal(err)
	}
	if back.Key() != tr.Key() || back.Trial != 2 || back.Requested != 1000 || back.Achieved != 999.5 || back.Requests != 9995 ||
		back.LatencyMs != tr.LatencyMs || len(back.Components) != 1 || back.Components[0].Class != "proxy" || back.Components[0].CPUMillicores != 140 {
		t.Errorf("trial from result = %+v", back)
	}
	// Strictness: a field SMP does not define is an error.
	bad := filepath.Join(dir, "bad.json")
	_ = os.WriteFile(bad, []byte(`{"smpVersion": "v0.6.1", "p999": 3}`), 0o644)
	if _, err := ReadResult(bad); err == nil || !strings.Contains(err.Error(), "p999") {
		t.Errorf("ReadResult accepted an unknown field: %v", err)
	}
}

// On Kubernetes the environment is the cluster's nodes, with the cluster
// and its version in labels; the platform nodes are the workloads.
func TestEnvironmentKubernetes(t *testing.T) {
	m := &results.Manifest{RunID: "abc123", Host: results.Host{CPUs: 2, MemoryMB: 24000}, Platform: results.Platform{
		Name: "kind", Network: "pods", Cluster: "meshbench-dev", Kubernetes: "v1.34.4",
		Nodes: map[string]string{"client": "10.244.1.2", "server": "10.244.2.3"},
		KubeNodes: []results.KubeNode{
			{Name: "meshbench-dev-control-plane", Role: "control-plane", Kubelet: "v1.34.4", CPUs: 2, MemoryMB: 24000},
			{Name: "meshbench-dev-worker", Role: "loadgen", Kubelet: "v1.34.4", CPUs: 2, MemoryMB: 24000},
		}}}
	env := Environment(m)
	if env.Labels[LabelKubernetes] != "v1.34.4" || env.Labels[LabelCluster] != "meshbench-dev" || env.Labels[LabelPlatform] != "kind" {
		t.Errorf("labels %v", env.Labels)
	}
	if len(env.Nodes) != 2 || env.Nodes[1].Type != "kind node meshbench-dev-worker (loadgen, kubelet v1.34.4)" || env.Nodes[1].Cores != 2 {
		t.Errorf("nodes %v", env.Nodes)
	}
	if len(env.IndividualWorkloads) != 2 || env.IndividualWorkloads[0].Name != "client" {
		t.Errorf("workloads %v", env.IndividualWorkloads)
	}
	local := Environment(&results.Manifest{RunID: "abc123", Host: results.Host{CPUs: 2}, Platform: results.Platform{Name: "local", Network: "netns",
		Nodes: map[string]string{"client": "10.213.0.2"}}})
	if len(local.Nodes) != 1 || local.Nodes[0].Type != "local-netns (client, 10.213.0.2)" || local.Labels[LabelKubernetes] != "" {
		t.Errorf("local environment %v", local)
	}
}
