package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/smps"
)

const controlPlaneScenario = `apiVersion: meshbench/v1
name: control-plane-test
meshes:
  - {name: meshbench, mode: sidecar}
  - {name: meshbench, mode: proxyless}
controlPlane:
  clients: [1, 60]
  repeats: 2
  timeout: 30s
`

// TestIntegrationControlPlaneBench runs the control-plane benchmark small:
// every change of every kind reaches every client (the deployment's own
// and the simulated ones), each step's record and SMPS document are
// written, and the table is printed. Times are recorded, not judged.
func TestIntegrationControlPlaneBench(t *testing.T) {
	integration(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "cp.yaml")
	if err := os.WriteFile(path, []byte(controlPlaneScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "results")
	r := meshbench(t, 3*time.Minute, "run", path, "--out", out)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	m, err := results.ReadManifest(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.ControlPlane) != 4 {
		t.Fatalf("%d steps recorded, want 4 (2 modes x 2 client counts)", len(m.ControlPlane))
	}
	for i, st := range m.ControlPlane {
		key := st.Mesh + "/" + st.Mode
		if want := []string{"sidecar", "sidecar", "proxyless", "proxyless"}[i]; st.Mode != want {
			t.Fatalf("step %d is %s, want mode %s", i, key, want)
		}
		// 1 client: the deployment's own are more; 60: simulated ones
		// make up the difference.
		own := st.Clients - st.Simulated
		if own < 1 || (i%2 == 0 && st.Simulated != 0) || (i%2 == 1 && st.Clients != 60) {
			t.Errorf("%s step %d: %d clients, %d simulated", key, i, st.Clients, st.Simulated)
		}
		if st.Simulated > 0 && st.ReplicaOf == "" {
			t.Errorf("%s: simulated clients replicate no node", key)
		}
		if len(st.Changes) != 4 {
			t.Fatalf("%s: %d kinds of change, want 4", key, len(st.Changes))
		}
		for _, ch := range st.Changes {
			if len(ch.Repeats) != 2 || ch.Missed != 0 {
				t.Errorf("%s %d clients %s: %d repeats, %d missed", key, st.Clients, ch.Change, len(ch.Repeats), ch.Missed)
			}
			for _, rep := range ch.Repeats {
				// Every client's configuration changed, and every client
				// acknowledged it.
				if rep.Changed != st.Clients || rep.Acked != rep.Changed || rep.LatencyMs.Max <= 0 {
					t.Errorf("%s %d clients %s change: %+v", key, st.Clients, ch.Change, rep)
				}
			}
		}
		if st.ControlPlane.RSSMaxMB <= 0 {
			t.Errorf("%s: control plane usage not measured: %+v", key, st.ControlPlane)
		}
		doc, err := smps.ReadMeshConfig(filepath.Join(out, st.Path, results.SMPMeshFile))
		if err != nil {
			t.Fatal(err)
		}
		cp := doc.GetMeshControlPlane()
		if cp.GetSidecars() != int32(st.Clients) || cp.GetMemMb() <= 0 || cp.GetCdsLatencyMs() <= 0 || cp.GetLdsLatencyMs() <= 0 ||
			doc.GetLabels()[smps.LabelPropagationPrefix+"route-p90-ms"] == "" {
			t.Errorf("%s: SMPS control plane %v, labels %v", key, cp, doc.GetLabels())
		}
	}
	rep := meshbench(t, time.Minute, "report", out)
	for _, want := range []string{"CLIENTS", "meshbench/proxyless  60", "endpoint"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the run's table has no %q:\n%s", want, r.stdout)
		}
		if rep.code != 0 || !strings.Contains(rep.stdout, want) {
			t.Errorf("meshbench report (exit %d) has no %q:\n%s%s", rep.code, want, rep.stdout, rep.stderr)
		}
	}
}
