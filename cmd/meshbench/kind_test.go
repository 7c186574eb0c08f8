package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/runner/results"
)

// kindStateDir is where the kind platform keeps its runs' state files
// (as root).
const kindStateDir = "/run/meshbench/kind"

// kindLeftovers lists what a kind run left behind: its state file, its
// namespace (when the cluster is there), its control directory in share,
// and host routes to pod ranges.
func kindLeftovers(t *testing.T, cluster, id, share string) []string {
	t.Helper()
	var out []string
	if _, err := os.Stat(filepath.Join(kindStateDir, id+".json")); err == nil {
		out = append(out, "state file")
	}
	if cluster != "" {
		if ns, err := kubectlIn(t, cluster, "get", "namespaces", "-l", "meshbench.dev/run="+id, "-o", "name"); err != nil || strings.TrimSpace(ns) != "" {
			out = append(out, "namespace: "+ns)
		}
	}
	if share != "" {
		if _, err := os.Stat(filepath.Join(share, ".meshbench-"+id)); err == nil {
			out = append(out, "control directory")
		}
	}
	routes, _ := exec.Command("ip", "-4", "route", "show").Output()
	for _, l := range strings.Split(string(routes), "\n") {
		if strings.HasPrefix(l, "10.244.") {
			out = append(out, "route "+l)
		}
	}
	return out
}

// meshbenchEnv runs meshbench with a changed environment.
func meshbenchEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(meshbenchBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// The smoke scenario on the kind platform, end to end: a cluster created
// for the run, the baseline, the own sidecar and per-node modes as pods,
// figures from the kubelets, the kind environment in the SMPS documents,
// and nothing left afterwards. Bad input first: exit 2, nothing created.
func TestIntegrationKindRun(t *testing.T) {
	engine(t)
	before := meshbench(t, time.Minute, "cluster", "list").stdout
	states, _ := os.ReadDir(kindStateDir)
	out := filepath.Join(t.TempDir(), "results")
	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"run", "smoke", "--platform", "kind", "--cluster", "nosuch", "--out", out}, "no meshbench cluster meshbench-nosuch"},
		{nil, []string{"run", "smoke", "--platform", "kind", "--cluster", "Bad_Name", "--out", out}, "--cluster: cluster name"},
		{nil, []string{"run", "smoke", "--platform", "kind", "--network", "netns", "--out", out}, "--network applies to the local platform only"},
		{nil, []string{"run", "smoke", "--platform", "kind", "--cluster", "x", "--keep-cluster", "--out", out}, "--keep-cluster applies to the cluster a run creates"},
		{nil, []string{"run", "smoke", "--platform", "kube", "--out", out}, "the kube platform"},
		{nil, []string{"run", "smoke", "--platform", "mars", "--out", out}, `unknown platform "mars"`},
		{nil, []string{"run", "smoke", "--cluster", "x", "--out", out}, "--cluster applies to the kind platform only"},
		{nil, []string{"conformance", "--suite", "smi", "--platform", "kind", "--out", out}, "local platform only"},
		{nil, []string{"conformance", "--out", out}, `required flag(s) "suite" not set`},
		{[]string{"PATH=/nonexistent"}, []string{"run", "smoke", "--platform", "kind", "--out", out}, "the kind platform needs Docker"},
	} {
		r := meshbenchEnv(t, c.env, c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v %v: exit %d, want 2 and %q in stderr:\n%s", c.env, c.args, r.code, c.want, r.stderr)
		}
	}
	if after := meshbench(t, time.Minute, "cluster", "list").stdout; after != before {
		t.Errorf("bad input created a cluster: before %q, after %q", before, after)
	}
	if now, _ := os.ReadDir(kindStateDir); len(now) != len(states) {
		t.Errorf("bad input left state files in %s: %d before, %d after", kindStateDir, len(states), len(now))
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("bad input created the results directory %s", out)
	}

	r := meshbench(t, 20*time.Minute, "run", "smoke", "--platform", "kind", "--out", out)
	if r.code != 0 {
		t.Fatalf("run smoke --platform kind: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	id := runID(t, r.stderr)
	t.Logf("kind run %s:\n%s", id, r.stdout)
	trials, err := results.ReadTrials(out)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]*results.Trial{}
	for _, tr := range trials {
		keys[tr.Key()] = tr
		if tr.Requests == 0 || tr.Errors != 0 {
			t.Errorf("%s: %d requests, %d errors", tr.Key(), tr.Requests, tr.Errors)
		}
	}
	for _, k := range []string{"none/baseline", "meshbench/sidecar", "meshbench/per-node"} {
		tr := keys[k]
		if tr == nil {
			t.Errorf("no %s trial; have %v", k, keys)
			continue
		}
		var proxies int
		for _, u := range tr.Components {
			if u.Class != results.ClassProxy {
				continue
			}
			proxies++
			if u.Source != "kubelet summary API" || u.CPUMillicores <= 0 || u.WorkingSetMaxMB <= 0 {
				t.Errorf("%s: proxy %s's figures %+v, want CPU and memory from the kubelet", k, u.Name, u)
			}
		}
		if k == "none/baseline" {
			continue
		}
		// The requests crossed the proxies: the server's proxy counted
		// them (its metrics, read while it ran).
		if proxies != 2 || len(tr.Services) != 1 || tr.Services[0].Mesh == nil || tr.Services[0].Mesh.Success < tr.Requests {
			t.Errorf("%s: %d proxies, services %+v: want 2 proxies and the server's proxy counting at least the %d measured requests", k, proxies, tr.Services, tr.Requests)
		}
	}
	var m results.Manifest
	if data, err := os.ReadFile(filepath.Join(out, "manifest.json")); err != nil || json.Unmarshal(data, &m) != nil {
		t.Fatalf("manifest: %v", err)
	}
	if p := m.Platform; p.Name != "kind" || !strings.HasPrefix(p.Kubernetes, "v1.34.") || len(p.KubeNodes) != 3 || p.Cluster != "meshbench-run-"+id {
		t.Errorf("manifest platform %+v: want kind, Kubernetes v1.34, 3 nodes, cluster meshbench-run-%s", p, id)
	}
	env, err := os.ReadFile(filepath.Join(out, "smp-environment.json"))
	if err != nil || !strings.Contains(string(env), `"meshbench.dev/platform": "kind"`) || !strings.Contains(string(env), `"meshbench.dev/kubernetes-version": "v1.34.`) ||
		!strings.Contains(string(env), "kind node meshbench-run-"+id+"-worker2 (sut, kubelet v1.34.") {
		t.Errorf("SMPS environment lacks the kind environment (%v):\n%s", err, env)
	}
	// The cluster the run created is gone, with everything else.
	if list := meshbench(t, time.Minute, "cluster", "list").stdout; strings.Contains(list, "meshbench-run-"+id) {
		t.Errorf("the run's cluster is still there: %s", list)
	}
	if l := kindLeftovers(t, "", id, out); len(l) > 0 {
		t.Errorf("run %s left behind: %v", id, l)
	}
}
