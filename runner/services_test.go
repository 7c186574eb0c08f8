package runner

import (
	"net/netip"
	"testing"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/meshes/none"
	"github.com/meshbench/meshbench/scenarios"
)

// TestClusterIPsInTheDataPath: a service with a ClusterIP is dialed there
// by the baseline's client and callers, and probed there; meshbench
// installs no balancing rules of its own for it (the platform's
// kube-proxy balances it), while a replicated service without one keeps
// them, and proxies still send to the pods.
func TestClusterIPsInTheDataPath(t *testing.T) {
	node := func(name, addr string) meshes.Node {
		return meshes.Node{Name: name, Addr: netip.MustParseAddr(addr), Local: netip.MustParseAddr("127.0.0.1")}
	}
	pod := func(name, app, addr string) meshes.Workload {
		return meshes.Workload{Name: name, App: app, Node: node(name, addr), Port: ServerPort}
	}
	vip := netip.MustParseAddr("10.96.7.7")
	env := meshes.Env{
		Client: meshes.Workload{Name: "client", Node: node("client", "10.0.0.2")},
		Services: []meshes.Service{
			{Workload: pod("front", "", "10.0.0.3"), ClusterIP: vip, Calls: []string{"back"},
				Replicas: []meshes.Workload{pod("front-1", "front", "10.0.0.4")}},
			{Workload: pod("back", "", "10.0.0.5"), Replicas: []meshes.Workload{pod("back-1", "back", "10.0.0.6")}},
		},
		Protocol: scenarios.ProtocolHTTP,
	}
	dep, err := none.New().Deploy(env, scenarios.Baseline)
	if err != nil {
		t.Fatal(err)
	}
	if want := "http://10.96.7.7:8080/"; dep.Target.URL != want {
		t.Errorf("baseline target %s, want the ClusterIP's %s", dep.Target.URL, want)
	}
	if c := dep.Apps["front"].Calls; len(c) != 1 || c[0].Dial != "10.0.0.5:8080" {
		t.Errorf("front's calls %+v: want back's first pod (no ClusterIP)", c)
	}
	rds := serviceBalancing(env)
	if len(rds) != 2 || rds[0].Node != "front" || rds[1].Node != "front-1" ||
		rds[0].Service != netip.MustParseAddr("10.0.0.5") || rds[1].Service != rds[0].Service {
		t.Errorf("balancing rules %+v: want back's only, one from each of its callers' nodes (front, front-1)", rds)
	}
	checks := serviceChecks(env)
	if len(checks) != 1 || checks[0].Service != "front" || checks[0].Probe.HTTPGet != "http://10.96.7.7:8080/healthz" {
		t.Errorf("service checks %+v: want front's ClusterIP health path", checks)
	}
	env.Transparent = true
	plan := meshes.PlanProxies(env, scenarios.Sidecar, meshes.Exclusion{Mark: 1})
	if want := "http://10.96.7.7:8080/"; plan.Target.URL != want {
		t.Errorf("transparent sidecars' target %s, want the ClusterIP's %s", plan.Target.URL, want)
	}
	if got := plan.Upstream(env.Services[0].Replicas[0]); got != "10.0.0.4:8080" {
		t.Errorf("a sidecar's upstream for front-1: %s, want the pod's own 10.0.0.4:8080", got)
	}
}
