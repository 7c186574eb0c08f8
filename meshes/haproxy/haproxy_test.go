package haproxy

import (
	"net/netip"
	"os/exec"
	"testing"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/scenarios"
)

// TestConfigsPassHAProxysCheck renders both modes and has haproxy itself
// check the configurations (haproxy -c).
func TestConfigsPassHAProxysCheck(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy is not installed (scripts/setup.sh installs it as root): cannot check its configuration")
	}
	for _, mode := range New().Modes() {
		for _, transparent := range []bool{false, true} {
			env := meshes.Env{
				Client:      meshes.Workload{Name: "client", Node: meshes.Node{Name: "client", Addr: netip.MustParseAddr("127.0.0.1"), Local: netip.MustParseAddr("127.0.0.1")}},
				Server:      meshes.Workload{Name: "server", Node: meshes.Node{Name: "server", Addr: netip.MustParseAddr("127.0.0.1"), Local: netip.MustParseAddr("127.0.0.1")}, Port: 8080},
				Dir:         t.TempDir(),
				Transparent: transparent,
			}
			dep, err := New().Deploy(env, mode)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range dep.Components {
				out, err := exec.Command(bin, "-c", "-f", c.Args[len(c.Args)-1]).CombinedOutput()
				if err != nil {
					t.Errorf("%s %s (transparent %v): haproxy -c: %v\n%s", mode, c.Name, transparent, err, out)
				}
			}
			if mode == scenarios.PerNode && len(dep.Redirects) > 0 {
				t.Errorf("per-node HAProxy asked for interception")
			}
		}
	}
}
