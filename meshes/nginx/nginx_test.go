package nginx

import (
	"net/netip"
	"os/exec"
	"testing"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/scenarios"
)

// TestConfigsPassNginxsCheck renders the sidecars and has nginx itself
// check the configurations (nginx -t).
func TestConfigsPassNginxsCheck(t *testing.T) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		t.Skip("nginx is not installed (scripts/setup.sh installs it as root): cannot check its configuration")
	}
	env := meshes.Env{
		Client: meshes.Workload{Name: "client", Node: meshes.Node{Name: "client", Addr: netip.MustParseAddr("127.0.0.1"), Local: netip.MustParseAddr("127.0.0.1")}},
		Server: meshes.Workload{Name: "server", Node: meshes.Node{Name: "server", Addr: netip.MustParseAddr("127.0.0.1"), Local: netip.MustParseAddr("127.0.0.1")}, Port: 8080},
		Dir:    t.TempDir(),
	}
	dep, err := New().Deploy(env, scenarios.Sidecar)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range dep.Components {
		out, err := exec.Command(bin, "-t", "-c", c.Args[1], "-e", "stderr").CombinedOutput()
		if err != nil {
			t.Errorf("%s: nginx -t: %v\n%s", c.Name, err, out)
		}
	}
}
