package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	smp "github.com/layer5io/service-mesh-performance/spec"

	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/smps"
)

// TestIntegrationLoadProtocols runs `meshbench run` with load.protocol
// grpc, tcp and http2: every (mesh, mode) that carries the protocol
// produces a row with every request answered end to end (through a call
// chain for grpc and http2), grpc-go's own xDS clients and servers
// (proxyless-grpc) included, and the others are reported unavailable with
// the reason, not run.
func TestIntegrationLoadProtocols(t *testing.T) {
	integration(t)
	requireReferenceProxies(t)
	const qps = 300
	for _, tc := range []struct {
		protocol string
		smp      smp.PerformanceTestConfig_Client_Protocol
		// unavailable are the (mesh, mode)s that must be reported, with
		// a word of their reason.
		unavailable map[string]string
	}{
		{"grpc", smp.PerformanceTestConfig_Client_PROTOCOL_GRPC, map[string]string{"meshbench/proxyless": "proxyless library"}},
		{"tcp", smp.PerformanceTestConfig_Client_PROTOCOL_TCP, map[string]string{"meshbench/proxyless": "proxyless library", "meshbench/proxyless-grpc": "grpc only"}},
		{"http2", smp.PerformanceTestConfig_Client_PROTOCOL_HTTP, map[string]string{"meshbench/proxyless": "proxyless library", "nginx/sidecar": "HTTP/1.x", "meshbench/proxyless-grpc": "grpc only"}},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			services := "    - name: front\n      calls: [back]\n    - name: back\n"
			if tc.protocol == "tcp" {
				services = "    - name: front\n"
			}
			scenario := fmt.Sprintf(`apiVersion: meshbench/v1
name: protocol-%s
topology:
  services:
%smeshes:
  - {name: none, mode: baseline}
  - {name: meshbench, mode: sidecar}
  - {name: meshbench, mode: per-node}
  - {name: meshbench, mode: proxyless}
  - {name: meshbench, mode: proxyless-grpc}
  - {name: haproxy, mode: sidecar}
  - {name: haproxy, mode: per-node}
  - {name: nginx, mode: sidecar}
load:
  protocol: %s
  qps: %d
  duration: 2s
  warmup: 1s
  requestSize: 100
`, tc.protocol, services, tc.protocol, qps)
			dir := t.TempDir()
			path := filepath.Join(dir, "scenario.yaml")
			if err := os.WriteFile(path, []byte(scenario), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "results")
			r := meshbench(t, 4*time.Minute, "run", path, "--out", out)
			if r.code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			t.Logf("table:\n%s", r.stdout)
			m, err := results.ReadManifest(out)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, u := range m.Unavailable {
				got[u.Mesh+"/"+u.Mode] = u.Reason
			}
			for key, word := range tc.unavailable {
				if !strings.Contains(got[key], word) || !strings.Contains(r.stdout, key+": unavailable: load.protocol "+tc.protocol) {
					t.Errorf("%s: want it reported unavailable (%q) in the manifest and the table, got %q", key, word, got[key])
				}
			}
			if len(got) != len(tc.unavailable) {
				t.Errorf("unavailable: %v, want only %v", got, tc.unavailable)
			}
			trials, err := results.ReadTrials(out)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, tr := range trials {
				seen[tr.Key()] = true
				checkTrial(t, out, m, tr, qps)
				if tr.Protocol != tc.protocol {
					t.Errorf("%s: protocol %q", tr.Key(), tr.Protocol)
				}
				if tc.protocol != "http2" && (tr.Statuses[results.StatusOK] != tr.Requests || len(tr.Codes) > 0) {
					t.Errorf("%s: statuses %v codes %v for %d requests", tr.Key(), tr.Statuses, tr.Codes, tr.Requests)
				}
				// Every request reached the entry service, and (chains)
				// every call of it the service behind.
				by := map[string]results.ServiceCount{}
				for _, s := range tr.Services {
					by[s.Name] = s
				}
				if f := by["front"]; f.Requests < tr.Requests {
					t.Errorf("%s: front served %d of %d requests", tr.Key(), f.Requests, tr.Requests)
				}
				// HTTP/2 end to end: no hop fell back to HTTP/1.1.
				if tc.protocol == "http2" {
					for _, s := range tr.Services {
						if s.HTTP1 != 0 {
							t.Errorf("%s: %d of %s's requests came over HTTP/1.x", tr.Key(), s.HTTP1, s.Name)
						}
					}
				}
				if tc.protocol != "tcp" {
					if f, b := by["front"], by["back"]; f.CallErrors != 0 || b.Requests != f.Calls || f.Calls != f.Requests {
						t.Errorf("%s: front %+v, back %+v: want every front request to call back once", tr.Key(), f, b)
					}
				}
				cfg, err := smps.ReadConfig(filepath.Join(out, tr.Dir(), results.SMPConfigFile))
				if err != nil {
					t.Fatal(err)
				}
				if p := cfg.GetClients()[0].GetProtocol(); p != tc.smp || cfg.GetLabels()[smps.LabelProtocol] != tc.protocol {
					t.Errorf("%s: SMP client protocol %v, label %q", tr.Key(), p, cfg.GetLabels()[smps.LabelProtocol])
				}
			}
			want := []string{"none/baseline", "meshbench/sidecar", "meshbench/per-node", "haproxy/sidecar", "haproxy/per-node"}
			if tc.protocol == "grpc" {
				// grpc-go's own xDS client and server, configured by the
				// control plane alone (checkTrial: every node ACKed), and
				// nginx's grpc_pass.
				want = append(want, "meshbench/proxyless-grpc")
			}
			if tc.protocol != "http2" {
				want = append(want, "nginx/sidecar") // grpc_pass; the stream module
			}
			for _, k := range want {
				if !seen[k] {
					t.Errorf("no %s row; got %v", k, seen)
				}
			}
		})
	}
}

// TestGRPCBootstrapReexec: a workload role given a grpc-go bootstrap
// re-executes itself at most once; where the variable still names
// another file after that, it fails, saying so, instead of looping.
func TestGRPCBootstrapReexec(t *testing.T) {
	boot := filepath.Join(t.TempDir(), "bootstrap.json")
	if err := os.WriteFile(boot, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, meshbenchBin, "workload", "client", "--protocol", "grpc", "--grpc-xds-bootstrap", boot,
		"--url", "http://front:8080/", "--host", "front:8080", "--out", filepath.Join(t.TempDir(), "out.json"))
	cmd.Env = append(os.Environ(), "GRPC_XDS_BOOTSTRAP=/elsewhere.json", "MESHBENCH_GRPC_REEXEC=1")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil || err == nil || !strings.Contains(string(out), "after re-executing") {
		t.Fatalf("err %v, context %v, output:\n%s", err, ctx.Err(), out)
	}
}
