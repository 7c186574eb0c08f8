package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/runner/results"
)

// TestIntegrationTopologies runs the built-in chain with every mesh and
// mode, the fan-out with one of each kind of data plane, and per-node
// (four backends sharing a node) with every row, for real: every service
// must have served every request and made all its calls through the mesh
// (checkTrial), with one proxy per workload, or per node in per-node rows.
func TestIntegrationTopologies(t *testing.T) {
	integration(t)
	for _, tc := range []struct {
		scenario, modes string
		workloads       int
		// nodes, when set, is the per-node rows' proxies.
		nodes int
		// rows is how many (mesh, mode) rows run.
		rows int
		// waypoints is the waypoint row's proxies beside its node proxies
		// (one per called service).
		waypoints int
		// network, when set, is the --network (the default is netns as
		// root).
		network string
	}{
		{"chain", "", 4, 0, 8, 0, ""}, // meshbench-fast, the fasthttp engine, among them
		{"fanout", "baseline,meshbench/sidecar,meshbench/per-node,meshbench/proxyless,haproxy/per-node,nginx/sidecar", 5, 0, 6, 0, ""},
		// The client's, the frontend's and the shared node's; the rows
		// include the L4 node proxies (meshbench-l4), whose apps dial
		// only their node proxy's ports.
		// and the waypoint row (meshbench-waypoint), a waypoint per
		// service on top.
		{"per-node", "", 6, 3, 9, 5, ""},
		// Pods on the shared node calling each other, through ports of
		// their own that take their own connections alone.
		{"testdata/shared-calls.yaml", "", 4, 3, 5, 3, ""},
		// On loopback, where every pod connects from 127.0.0.1 and no
		// port can be the pod's by source.
		{"testdata/shared-calls.yaml", "baseline,meshbench/per-node,meshbench-l4/per-node,haproxy/per-node", 4, 3, 4, 0, "loopback"},
	} {
		t.Run(tc.scenario+tc.network, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), filepath.Base(tc.scenario))
			args := []string{"run", tc.scenario, "--trials", "1", "--duration", "1s", "--qps", "300", "--out", out}
			if tc.modes != "" {
				args = append(args, "--modes", tc.modes)
			}
			if tc.network != "" {
				args = append(args, "--network", tc.network)
			}
			m, trials := runAll(t, 4*time.Minute, out, args...)
			if len(trials) != tc.rows {
				t.Errorf("%d trials, want %d", len(trials), tc.rows)
			}
			for _, tr := range trials {
				checkTrial(t, out, m, tr, 300)
				proxies := 0
				for _, u := range tr.Components {
					if u.Class == results.ClassProxy {
						proxies++
					}
				}
				switch want := tc.workloads; {
				case tr.Mode == "baseline" || tr.Mode == "proxyless":
					if proxies != 0 {
						t.Errorf("%s: %d proxies, want none", tr.Key(), proxies)
					}
				case tr.Mesh == "meshbench-waypoint":
					if proxies != tc.nodes+tc.waypoints {
						t.Errorf("%s: %d proxies, want one per node and one per service (%d)", tr.Key(), proxies, tc.nodes+tc.waypoints)
					}
				case tr.Mode == "per-node" && tc.nodes > 0:
					if proxies != tc.nodes {
						t.Errorf("%s: %d proxies, want one per node (%d)", tr.Key(), proxies, tc.nodes)
					}
				case proxies != want:
					t.Errorf("%s: %d proxies, want one per workload (%d)", tr.Key(), proxies, want)
				}
			}
		})
	}
}

// TestIntegrationMaxSearch runs two short max searches: one whose SLO every
// probe meets (the search must stop at its limit, doubling), and one no
// probe can meet (the search must bisect down and report no rate).
func TestIntegrationMaxSearch(t *testing.T) {
	integration(t)
	dir := t.TempDir()
	write := func(name, slo string) string {
		path := filepath.Join(dir, name+".yaml")
		doc := `apiVersion: meshbench/v1
name: ` + name + `
meshes:
  - {name: none, mode: baseline}
  - {name: meshbench, mode: sidecar}
load:
  max:
    slo: ` + slo + `
    start: 400
    limit: 1600
    maxProbes: 3
  connections: 16
  duration: 1s
  warmup: 0s
`
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for _, tc := range []struct {
		name, slo  string
		rate       float64
		stop       string
		probeRates []float64
	}{
		// The test is of the search (doubling to the limit, bisecting
		// down), not of capacity: "easy" passes any probe that drove half
		// its rate, which a busy machine does.
		{"easy", "{p99: 1s, minAchieved: 0.5}", 1600, "limit", []float64{400, 800, 1600}},
		{"impossible", "{p50: 1us}", 0, "probes", []float64{400, 200, 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+"-results")
			r := meshbench(t, 3*time.Minute, "run", write(tc.name, tc.slo), "--out", out)
			if r.code != 0 {
				t.Fatalf("exit %d\nstderr:\n%s", r.code, r.stderr)
			}
			m, err := results.ReadManifest(out)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Max) != 2 {
				t.Fatalf("max results %+v, want one per (mesh, mode)", m.Max)
			}
			for _, res := range m.Max {
				if res.Rate != tc.rate || res.Stop != tc.stop || res.Probes != 3 {
					t.Errorf("%s: %+v, want max %g stopped by %s after 3 probes", res.Key(), res, tc.rate, tc.stop)
				}
			}
			trials, err := results.ReadTrials(out)
			if err != nil {
				t.Fatal(err)
			}
			rates := map[string][]float64{}
			for _, tr := range trials {
				if tr.Probe == nil || tr.Probe.Pass != (tc.rate > 0) || (tr.Probe.Reason == "") == (tc.rate == 0) {
					t.Errorf("%s probe at %g: %+v", tr.Key(), tr.Requested, tr.Probe)
				}
				checkTrial(t, out, m, tr, tr.Requested)
				rates[tr.Key()] = append(rates[tr.Key()], tr.Requested)
			}
			for key, got := range rates {
				if !slices.Equal(got, tc.probeRates) {
					t.Errorf("%s probed %v, want %v", key, got, tc.probeRates)
				}
			}
			if !strings.Contains(r.stdout, "MAX QPS") {
				t.Errorf("no max table:\n%s", r.stdout)
			}
		})
	}
}
