package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The meshes whose data planes come only from a registry: where none
// answers, each (mesh, mode) is reported unavailable with the error a pull
// meets, and the run goes on with the baseline. The registries are made
// unreachable through a proxy on a closed loopback port (the standard
// HTTPS_PROXY), so that the test sends nothing off this machine, not even
// a DNS query.
func TestIntegrationUpstreamUnavailable(t *testing.T) {
	integration(t)
	out := filepath.Join(t.TempDir(), "results")
	r := meshbenchEnv(t, []string{"HTTPS_PROXY=http://127.0.0.1:1", "NO_PROXY="},
		"run", filepath.Join("testdata", "upstream.yaml"), "--out", out)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`istio/sidecar: unavailable: Istio 1\.27\.3 \(sidecar\) needs its images from a registry: pull docker\.io/istio/pilot:1\.27\.3: .*https://registry-1\.docker\.io/v2/.*connection refused`),
		regexp.MustCompile(`istio/per-node: unavailable: Istio 1\.27\.3 \(per-node\) needs its images from a registry: pull docker\.io/istio/pilot:1\.27\.3: .*connection refused`),
		regexp.MustCompile(`linkerd/sidecar: unavailable: Linkerd edge-25\.10\.1 \(sidecar\) needs its images from a registry: pull cr\.l5d\.io/linkerd/controller:edge-25\.10\.1: .*https://cr\.l5d\.io/v2/.*connection refused`),
	} {
		if !want.MatchString(r.stdout) {
			t.Errorf("stdout lacks %s:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "none  baseline") {
		t.Errorf("the baseline did not run:\n%s", r.stdout)
	}
}
