package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The meshes whose data planes come only from a registry: without one
// (this machine), each (mesh, mode) is reported unavailable with the error
// a pull meets, and the run goes on with the baseline; with one, they say
// their installer is not in this build. Either way the run does not hang.
func TestIntegrationUpstreamUnavailable(t *testing.T) {
	integration(t)
	out := filepath.Join(t.TempDir(), "results")
	r := meshbench(t, 5*time.Minute, "run", filepath.Join("testdata", "upstream.yaml"), "--out", out)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`istio/sidecar: unavailable: Istio 1\.27\.3 \(sidecar\)( needs its images from a registry: pull docker\.io/istio/pilot:1\.27\.3: .+|: its registries answer, but installing it .* is not in this build .*)`),
		regexp.MustCompile(`istio/per-node: unavailable: Istio 1\.27\.3 \(per-node\)( needs its images from a registry: pull docker\.io/istio/pilot:1\.27\.3: .+|: its registries answer, .*ztunnel.*)`),
		regexp.MustCompile(`linkerd/sidecar: unavailable: Linkerd edge-25\.10\.1 \(sidecar\)( needs its images from a registry: pull cr\.l5d\.io/linkerd/controller:edge-25\.10\.1: .+|: its registries answer, .*)`),
	} {
		if !want.MatchString(r.stdout) {
			t.Errorf("stdout lacks %s:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "none  baseline") {
		t.Errorf("the baseline did not run:\n%s", r.stdout)
	}
}
