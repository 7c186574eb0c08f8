package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/runner/results"
)

// TestIntegrationReferenceDataPlanes runs a shortened matrix with real
// HAProxy and nginx processes beside the own proxies.
func TestIntegrationReferenceDataPlanes(t *testing.T) {
	integration(t)
	requireReferenceProxies(t)
	out := filepath.Join(t.TempDir(), "results")
	// A relative --out, as users type it: every process must still find its files.
	rel, err := filepath.Rel(mustGetwd(t), out)
	if err != nil {
		t.Fatal(err)
	}
	m, trials := runAll(t, 3*time.Minute, out, "run", "reference", "--duration", "2s", "--trials", "1", "--out", rel)
	seen := map[string]*results.Trial{}
	for _, tr := range trials {
		seen[tr.Key()] = tr
		checkTrial(t, out, m, tr, 1000)
	}
	for key, version := range map[string]string{"haproxy/sidecar": "HAProxy version", "haproxy/per-node": "HAProxy version", "nginx/sidecar": "nginx version"} {
		tr := seen[key]
		if tr == nil {
			t.Errorf("no %s trial", key)
			continue
		}
		if !strings.HasPrefix(tr.DataPlane, version) {
			t.Errorf("%s: data plane %q, want its version", key, tr.DataPlane)
		}
		proxies := 0
		for _, u := range tr.Components {
			if u.Class == results.ClassProxy {
				proxies++
			}
		}
		if proxies != 2 {
			t.Errorf("%s: %d proxy components, want 2", key, proxies)
		}
		if strings.HasSuffix(key, "sidecar") && m.Platform.Transparent && !strings.Contains(tr.Target, m.Platform.Nodes["server"]+":8080") {
			t.Errorf("%s: transparent platform, but the client called %s", key, tr.Target)
		}
	}
}

func mustGetwd(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

// runAll runs meshbench to success and reads the results it wrote to out,
// in which every (mesh, mode) of the scenario must have run.
func runAll(t *testing.T, timeout time.Duration, out string, args ...string) (*results.Manifest, []*results.Trial) {
	t.Helper()
	r := meshbench(t, timeout, args...)
	if r.code != 0 {
		t.Fatalf("meshbench %v: exit %d\nstderr:\n%s", args, r.code, r.stderr)
	}
	t.Logf("table:\n%s", r.stdout)
	m, err := results.ReadManifest(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Unavailable) > 0 {
		t.Errorf("unavailable: %+v", m.Unavailable)
	}
	trials, err := results.ReadTrials(out)
	if err != nil {
		t.Fatal(err)
	}
	return m, trials
}

// requireReferenceProxies fails the test when HAProxy or nginx is missing
// as root (scripts/setup.sh installs them), and skips it, saying why, when
// they are missing otherwise.
func requireReferenceProxies(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"haproxy", "nginx"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Geteuid() == 0 {
				t.Fatalf("%s is missing although scripts/setup.sh installs it as root: %v", bin, err)
			}
			t.Skipf("%s is not installed and this is not root (scripts/setup.sh installs it as root)", bin)
		}
	}
}
