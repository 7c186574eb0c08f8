package meshbench

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/proxy"
	"github.com/meshbench/meshbench/scenarios"
)

func TestSidecarRendersLoadableConfigs(t *testing.T) {
	node := func(name, addr string, netns bool) meshes.Node {
		a := netip.MustParseAddr(addr)
		local := a
		if netns {
			local = netip.MustParseAddr("127.0.0.1")
		}
		return meshes.Node{Name: name, Addr: a, Local: local}
	}
	for _, netns := range []bool{true, false} {
		env := meshes.Env{
			Client: meshes.Workload{Name: "client", Node: node("client", "10.0.0.2", netns)},
			Server: meshes.Workload{Name: "server", Node: node("server", "10.0.0.3", netns), Port: 8080},
			Dir:    t.TempDir(),
		}
		dep, err := New("v").Deploy(env, scenarios.Sidecar)
		if err != nil {
			t.Fatal(err)
		}
		if len(dep.Components) != 2 || dep.Target.Host != "server:8080" {
			t.Fatalf("deployment = %+v", dep)
		}
		if want := "http://" + meshes.HostPort(env.Client.Node.Local, OutboundPort) + "/"; dep.Target.URL != want {
			t.Errorf("target %s, want %s", dep.Target.URL, want)
		}
		for _, c := range dep.Components {
			if c.Class != "proxy" || !strings.HasSuffix(c.Ready.HTTPGet, "/ready") || c.Args[0] != "proxy" {
				t.Errorf("component %+v", c)
			}
			cfg, err := proxy.LoadConfig(c.Args[2])
			if err != nil {
				t.Fatalf("%s: rendered config does not load: %v", c.Name, err)
			}
			if c.Name == "client-sidecar" && cfg.Clusters[0].Endpoints[0].Address != "10.0.0.3:15006" {
				t.Errorf("client sidecar sends to %s, want the server sidecar's inbound", cfg.Clusters[0].Endpoints[0].Address)
			}
		}
	}
	if _, err := New("v").Deploy(meshes.Env{}, scenarios.PerNode); err == nil {
		t.Error("Deploy accepted an unsupported mode")
	}
}
