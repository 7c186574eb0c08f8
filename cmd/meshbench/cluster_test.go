package main

import (
	"archive/tar"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// engine skips the test when no Docker engine answers, saying why; under
// `make test` (MESHBENCH_ENGINE=required, after scripts/engine.sh started
// one) that is a failure instead.
func engine(t *testing.T) {
	t.Helper()
	integration(t)
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		msg := "no Docker engine answers (scripts/engine.sh starts one; make test runs it): " + strings.TrimSpace(string(out))
		if os.Getenv("MESHBENCH_ENGINE") == "required" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// meshbench's image, built without a Dockerfile or registry: written as
// a docker-save archive, loaded into the engine, and run (privileged too,
// as kind runs its nodes: on this machine that needs the runtime wrapper
// scripts/engine.sh registers).
func TestIntegrationImage(t *testing.T) {
	engine(t)
	archive := filepath.Join(t.TempDir(), "image.tar")
	r := meshbench(t, time.Minute, "cluster", "build-image", "--output", archive)
	if r.code != 0 {
		t.Fatalf("build-image --output: exit %d\n%s", r.code, r.stderr)
	}
	ref := "meshbench.local/meshbench:dev"
	if got := archiveTags(t, archive); len(got) != 1 || got[0] != ref {
		t.Errorf("archive tags = %v, want [%s]", got, ref)
	}
	r = meshbench(t, 2*time.Minute, "cluster", "build-image")
	if r.code != 0 || !strings.Contains(r.stdout, "Loaded image: "+ref) {
		t.Fatalf("build-image: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "--force", ref).Run() })
	for _, args := range [][]string{{"run", "--rm", ref, "version"}, {"run", "--rm", "--privileged", ref, "version"}} {
		out, err := exec.Command("docker", args...).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "meshbench dev") {
			t.Errorf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	// A dynamically linked binary cannot run in the image: bad input.
	r = meshbench(t, time.Minute, "cluster", "build-image", "--binary", "/bin/sh", "--output", archive+".2")
	if r.code != 2 || !strings.Contains(r.stderr, "dynamically linked") {
		t.Errorf("--binary /bin/sh: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(archive + ".2"); err == nil {
		t.Error("a refused build wrote its output")
	}
}

// archiveTags reads the RepoTags of a docker-save archive's manifest.
func archiveTags(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatalf("%s: no manifest.json", path)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != "manifest.json" {
			continue
		}
		var m []struct{ RepoTags []string }
		if err := json.NewDecoder(tr).Decode(&m); err != nil {
			t.Fatal(err)
		}
		var tags []string
		for _, e := range m {
			tags = append(tags, e.RepoTags...)
		}
		return tags
	}
}
