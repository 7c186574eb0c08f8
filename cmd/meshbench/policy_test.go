package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/reports"
	"github.com/meshbench/meshbench/runner/results"
)

// canaryScenario shifts app's traffic from app-v1 to app-v2 at 4 s and
// 8 s of a 12 s window: 90/10, 50/50, 0/100. HAProxy cannot express it and
// is left out.
const canaryScenario = `apiVersion: meshbench/v1
name: canary-test
topology:
  services:
    - name: app
    - name: app-v1
    - name: app-v2
meshes:
  - {name: meshbench, mode: sidecar}
  - {name: meshbench, mode: per-node}
  - {name: meshbench, mode: proxyless}
  - {name: meshbench, mode: per-node, as: meshbench-waypoint, proxy: {layer: l4, waypoint: true}}
  - {name: haproxy, mode: sidecar}
load:
  qps: 500
  duration: 12s
  warmup: 500ms
trials: 1
onUnsupportedPolicy: skip
policies:
  - apiVersion: split.smi-spec.io/v1alpha4
    kind: TrafficSplit
    metadata: {name: canary}
    spec: {service: app, backends: [{service: app-v1, weight: 90}, {service: app-v2, weight: 10}]}
  - at: 4s
    apiVersion: split.smi-spec.io/v1alpha4
    kind: TrafficSplit
    metadata: {name: canary}
    spec: {service: app, backends: [{service: app-v1, weight: 50}, {service: app-v2, weight: 50}]}
  - at: 8s
    apiVersion: split.smi-spec.io/v1alpha4
    kind: TrafficSplit
    metadata: {name: canary}
    spec: {service: app, backends: [{service: app-v2, weight: 100}]}
`

// TestIntegrationPolicyShift runs a canary under load: no request fails,
// and each second's traffic follows the split in force, measured from the
// services' own per-second counts. A second counts when it began at least
// a second after the change was put in force (propagation is bounded here
// only loosely; the README gives the measured figure), and the share is
// judged with an exact binomial test at a one-in-a-million false-failure
// rate, so noise cannot fail it.
func TestIntegrationPolicyShift(t *testing.T) {
	integration(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "canary.yaml")
	if err := os.WriteFile(path, []byte(canaryScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "results")
	r := meshbench(t, 4*time.Minute, "run", path, "--out", out)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "haproxy/sidecar left out: policies: mesh haproxy has no traffic policy") {
		t.Errorf("the run does not say that HAProxy was left out:\n%s", r.stderr)
	}
	m, err := results.ReadManifest(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Unavailable) != 1 || m.Unavailable[0].Mesh != "haproxy" {
		t.Errorf("manifest's left-out pairs: %+v", m.Unavailable)
	}
	trials, err := results.ReadTrials(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(trials) != 4 {
		t.Fatalf("%d trials, want the own sidecar, per-node, proxyless and per-node with waypoints (where the split runs)", len(trials))
	}
	for _, tr := range trials {
		name := tr.Key()
		if tr.Errors != 0 || tr.Requests == 0 {
			t.Errorf("%s: %d errors of %d requests", name, tr.Errors, tr.Requests)
		}
		if len(tr.Events) != 2 || tr.Events[0].Kind != "policy" {
			t.Fatalf("%s: events %+v, want the two policy changes", name, tr.Events)
		}
		if cp := tr.ControlPlane; cp == nil || cp.Changes < 3 || cp.Current != cp.Nodes || len(cp.NACKs) > 0 {
			t.Errorf("%s: control plane %+v, want every proxy at the last of at least 3 versions, no NACK", name, cp)
		}
		v1, v2 := perSecond(t, tr, "app-v1"), perSecond(t, tr, "app-v2")
		checked := 0
		for sec, a := range v1 {
			b, ok := v2[sec]
			if !ok {
				continue
			}
			from := a.from
			weight := 0.1 // app-v2's share in force
			switch {
			case from >= tr.Events[1].At+1:
				weight = 1
			case from >= tr.Events[0].At+1 && a.to <= tr.Events[1].At:
				weight = 0.5
			case a.to <= tr.Events[0].At && from >= 0:
			default:
				continue // a second around a change
			}
			n, k := a.n+b.n, b.n
			if n < 100 {
				continue // the window's edges
			}
			checked++
			if weight == 1 {
				if a.n != 0 {
					t.Errorf("%s: %d requests reached app-v1 in the second from %.1fs, after the split sent everything to app-v2", name, a.n, from)
				}
				continue
			}
			if p := reports.BinomialP(int(k), int(n), weight); p < 1e-6 {
				t.Errorf("%s: second from %.1fs: %d of %d requests to app-v2 (p = %.2g under a %.0f%% share)", name, from, k, n, p, weight*100)
			}
		}
		if checked < 4 {
			t.Errorf("%s: only %d seconds to judge", name, checked)
		}
	}
}

// second is what a service served in one second of the window.
type second struct {
	from, to float64 // seconds from the window's start
	n        int64
}

// perSecond is service's per-second counts, from its ticks, by the clock
// second they end at (every service ticks on whole seconds).
func perSecond(t *testing.T, tr *results.Trial, service string) map[int64]second {
	t.Helper()
	for _, s := range tr.Services {
		if s.Name != service {
			continue
		}
		out := map[int64]second{}
		for i := 1; i < len(s.Ticks); i++ {
			out[s.Ticks[i].Time.Round(time.Second).Unix()] = second{
				from: s.Ticks[i-1].Time.Sub(tr.MeasureStart).Seconds(),
				to:   s.Ticks[i].Time.Sub(tr.MeasureStart).Seconds(),
				n:    s.Ticks[i].Requests - s.Ticks[i-1].Requests,
			}
		}
		return out
	}
	t.Fatalf("%s: no counts of %s", tr.Key(), service)
	return nil
}

// waypointAccessScenario lets app call back for 4 s, then narrows the
// route group app may use to a path nobody requests: back's waypoint
// must deny app's requests from then on. Its RBAC can only tell app's
// requests apart by app's identity, which reaches it across the tunnel
// from app's node proxy and the waypoint's internal hop.
const waypointAccessScenario = `apiVersion: meshbench/v1
name: waypoint-access
topology:
  services:
    - name: app
      calls: [back]
    - name: back
meshes:
  - {name: meshbench, mode: per-node, as: meshbench-waypoint, proxy: {layer: l4, waypoint: true}}
load:
  qps: 200
  duration: 8s
  warmup: 500ms
trials: 1
policies:
  - apiVersion: specs.smi-spec.io/v1alpha4
    kind: HTTPRouteGroup
    metadata: {name: routes}
    spec:
      matches:
        - {name: all, pathRegex: "/.*", methods: ["*"]}
  - apiVersion: access.smi-spec.io/v1alpha3
    kind: TrafficTarget
    metadata: {name: app-to-back}
    spec:
      destination: {kind: ServiceAccount, name: back}
      rules: [{kind: HTTPRouteGroup, name: routes, matches: [all]}]
      sources: [{kind: ServiceAccount, name: app}]
  - at: 4s
    apiVersion: specs.smi-spec.io/v1alpha4
    kind: HTTPRouteGroup
    metadata: {name: routes}
    spec:
      matches:
        - {name: all, pathRegex: "/nothing", methods: ["*"]}
`

// TestIntegrationWaypointAccess: L7 access policy on the L4 node
// proxies' waypoints, by the caller's identity. Every whole second
// before the change, back serves; every whole second from a second after
// it, back serves nothing and app's callers see its calls fail.
func TestIntegrationWaypointAccess(t *testing.T) {
	integration(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "access.yaml")
	if err := os.WriteFile(path, []byte(waypointAccessScenario), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "results")
	if r := meshbench(t, 4*time.Minute, "run", path, "--out", out); r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	trials, err := results.ReadTrials(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(trials) != 1 || len(trials[0].Events) != 1 {
		t.Fatalf("%d trials (want 1), events %+v", len(trials), trials)
	}
	tr := trials[0]
	change := tr.Events[0].At
	before, after := 0, 0
	for _, s := range perSecond(t, tr, "back") {
		switch {
		case s.from >= 0 && s.to <= change && s.to-s.from > 0.9:
			before++
			if s.n == 0 {
				t.Errorf("back served nothing in the second from %.1fs, before access was narrowed at %.1fs", s.from, change)
			}
		case s.from >= change+1 && s.to <= tr.End.Sub(tr.MeasureStart).Seconds():
			after++
			if s.n != 0 {
				t.Errorf("back served %d requests in the second from %.1fs, after access was narrowed at %.1fs", s.n, s.from, change)
			}
		}
	}
	if before < 2 || after < 2 {
		t.Errorf("%d seconds before the change and %d after to judge, want 2 of each", before, after)
	}
	if tr.Codes[200] == 0 || tr.Errors == 0 {
		t.Errorf("client codes %v: want answers before the change and failures after", tr.Codes)
	}
	for _, s := range tr.Services {
		if s.Name == "back" && (s.Mesh == nil || len(s.Mesh.From) != 1 || s.Mesh.From["app"] == 0) {
			t.Errorf("back's waypoint's traffic metrics %+v: want requests from app alone, by its identity", s.Mesh)
		}
	}
}
