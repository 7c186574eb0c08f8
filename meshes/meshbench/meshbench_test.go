package meshbench

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/proxy/xds"
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
			b, err := xds.ReadFile(c.Args[2])
			if err != nil {
				t.Fatalf("%s: rendered bundle does not decode: %v", c.Name, err)
			}
			cfg, err := xds.Translate(b, c.Name, "")
			if err != nil {
				t.Fatalf("%s: rendered config does not load: %v", c.Name, err)
			}
			if c.Name == "client-sidecar" {
				cl := cfg.Clusters[0]
				if cl.Endpoints[0].Address != "10.0.0.3:15006" || cl.TLS == nil || cl.TLS.AllowedIDs[0] != "spiffe://meshbench.local/ns/default/sa/server" {
					t.Errorf("client sidecar cluster %+v: want mTLS to the server sidecar's inbound", cl)
				}
			}
			if c.Name == "server-sidecar" {
				l := cfg.Listeners[0]
				if l.TLS == nil || l.TLS.AllowedIDs[0] != "spiffe://meshbench.local/ns/default/sa/client" {
					t.Errorf("server sidecar listener %+v: want mTLS accepting only the client", l)
				}
			}
		}
	}
	if _, err := New("v").Deploy(meshes.Env{}, scenarios.Baseline); err == nil {
		t.Error("Deploy accepted an unsupported mode")
	}
}

func TestEveryModeRenders(t *testing.T) {
	env := meshes.Env{
		Client: meshes.Workload{Name: "client", Node: meshes.Node{Name: "client", Addr: netip.MustParseAddr("10.0.0.2"), Local: netip.MustParseAddr("127.0.0.1")}},
		Server: meshes.Workload{Name: "server", Node: meshes.Node{Name: "server", Addr: netip.MustParseAddr("10.0.0.3"), Local: netip.MustParseAddr("127.0.0.1")}, Port: 8080, PayloadSize: 1024},
	}
	for _, mode := range New("v").Modes() {
		env.Dir = t.TempDir()
		dep, err := New("v").Deploy(env, mode)
		if err != nil {
			t.Errorf("%s: %v", mode, err)
			continue
		}
		switch mode {
		case scenarios.PerNode:
			if len(dep.Components) != 2 || !strings.HasPrefix(dep.Components[0].Name, "node-proxy-") {
				t.Errorf("per-node components: %+v", dep.Components)
			}
		case scenarios.Proxyless:
			if len(dep.Components) != 1 || dep.Components[0].Class != "app" || dep.Target.URL != "http://server:8080/" ||
				len(dep.Target.ClientArgs) != 2 || dep.Components[0].Ready.TCP != "10.0.0.3:8443" {
				t.Errorf("proxyless deployment: %+v", dep)
			}
		}
	}
}
