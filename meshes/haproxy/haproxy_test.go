package haproxy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshbench/meshbench/meshes/internal/meshtest"
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
			for shape := range meshtest.Shapes {
				env := meshtest.Env(t.TempDir(), shape, transparent)
				env.Transparent = transparent
				dep, err := New().Deploy(env, mode)
				if err != nil {
					t.Fatal(err)
				}
				// A proxy per workload, or per node (svc-1's to svc-3's
				// pods share one in the shape "shared").
				want := len(env.Workloads())
				if mode == scenarios.PerNode && shape == "shared" {
					want -= 3
				}
				if len(dep.Components) != want {
					t.Errorf("%s %s: %d proxies for %d workloads, want %d", mode, shape, len(dep.Components), len(env.Workloads()), want)
				}
				for _, c := range dep.Components {
					out, err := exec.Command(bin, "-c", "-f", c.Args[len(c.Args)-1]).CombinedOutput()
					if err != nil {
						t.Errorf("%s %s %s (transparent %v): haproxy -c: %v\n%s", mode, shape, c.Name, transparent, err, out)
					}
				}
				if mode == scenarios.PerNode && len(dep.Redirects) > 0 {
					t.Errorf("per-node HAProxy asked for interception")
				}
				if mode == scenarios.PerNode && shape == "shared" {
					// svc-2's pods call svc-4 on the shared node's ports
					// of their own: from themselves alone where a pod has
					// its own network (netns); on loopback every pod's
					// connections come from 127.0.0.1, and none is refused.
					cfg, err := os.ReadFile(filepath.Join(env.Dir, "shared-node-haproxy.cfg"))
					if err != nil {
						t.Fatal(err)
					}
					checked := 0
					for _, w := range env.Workloads() {
						if w.Name != "svc-2" && w.Name != "svc-2-1" {
							continue
						}
						checked++
						_, section, _ := strings.Cut(string(cfg), "frontend outbound-"+w.Name+"\n")
						section, _, _ = strings.Cut(section, "\n\n")
						reject := "    tcp-request connection reject unless { src " + w.Node.Addr.String() + " }"
						if !strings.HasPrefix(section, "    bind "+w.Host.Addr.String()+":") || strings.Contains(section, reject) != transparent {
							t.Errorf("netns %v: shared node's frontend for %s (want the reject rule: %v):\n%s", transparent, w.Name, transparent, section)
						}
					}
					if checked != 2 {
						t.Errorf("shape shared has %d of svc-2's pods, want 2", checked)
					}
				}
			}
		}
	}
}
