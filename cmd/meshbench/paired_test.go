package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// candidate writes an executable that records each start and runs the
// test's meshbench binary: a build of the proxy that is provably the one
// started.
func candidate(t *testing.T, dir, name string) (bin, calls string) {
	t.Helper()
	bin, calls = filepath.Join(dir, name), filepath.Join(dir, name+".calls")
	script := fmt.Sprintf("#!/bin/sh\necho \"$*\" >> %s\nexec %s \"$@\"\n", calls, meshbenchBin)
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, calls
}

// TestIntegrationCandidateBinary runs the gate scenario with a candidate
// build beside the proxy: the full meshbench binary (behind a wrapper
// that records each start), where the proxies otherwise run as
// meshbench-proxy, the proxy role alone. The full binary links all of
// meshbench, so its proxies' resident memory is larger by tens of MB (a
// fact of the build, not of noise: measured x1.43 on the run's whole
// memory): the paired gate must fail it on proxy-mem.
func TestIntegrationCandidateBinary(t *testing.T) {
	integration(t)
	dir := t.TempDir()
	same, sameCalls := candidate(t, dir, "full")
	aa := filepath.Join(dir, "aa")
	r := meshbench(t, 4*time.Minute, "run", "gate", "--trials", "6", "--duration", "1s", "--qps", "300", "--candidate-binary", same, "--out", aa)
	if r.code != 0 || !strings.Contains(r.stdout, "meshbench-candidate") {
		t.Fatalf("run --candidate-binary: exit %d, want 0 and a meshbench-candidate row\n%s%s", r.code, r.stdout, r.stderr)
	}
	calls, _ := os.ReadFile(sameCalls)
	if n := strings.Count(string(calls), "proxy --ads"); n < 6 {
		t.Errorf("the candidate build started %d proxies over 6 trials, want at least 6:\n%s", n, calls)
	}

	var c struct {
		Paired bool `json:"paired"`
		Rows   []struct {
			Key             string `json:"key"`
			BaseTrials      int    `json:"baseTrials"`
			CandidateTrials int    `json:"candidateTrials"`
			Verdicts        []struct {
				Rule, Outcome, Detail string
			} `json:"verdicts"`
		} `json:"rows"`
	}
	r = meshbench(t, time.Minute, "compare", "--paired", aa, "--gate", "proxy-cpu:auto", "--format", "json")
	if err := json.Unmarshal([]byte(r.stdout), &c); err != nil || r.code == 2 || !c.Paired || len(c.Rows) != 1 {
		t.Fatalf("compare --paired: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if row := c.Rows[0]; row.Key != "meshbench/sidecar@300" || row.BaseTrials != 6 || row.CandidateTrials != 6 ||
		len(row.Verdicts) != 1 || !strings.Contains(row.Verdicts[0].Detail, "paired spread") {
		t.Errorf("paired row: %+v", row)
	}
	r = meshbench(t, time.Minute, "compare", "--paired", aa, "--gate", "proxy-mem:+10%")
	if r.code != 1 || !strings.Contains(r.stdout, "paired by trial") {
		t.Errorf("compare --paired --gate proxy-mem:+10%%, the full binary's proxies: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}

	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"run", "gate", "--candidate-binary", filepath.Join(dir, "none")}, "flag --candidate-binary: "},
		{[]string{"run", "gate", "--candidate-binary", dir}, "is not an executable file"},
		{[]string{"run", "gate", "--modes", "baseline", "--candidate-binary", same}, "no meshbench sidecar or per-node row"},
		{[]string{"compare", "--paired", aa, aa}, "flag --paired: give one results directory"},
		{[]string{"compare", "--paired", aa, "--history", dir}, "flag --paired"},
		{[]string{"compare", "--paired", aa, "--window", "5"}, "flag --window: only applies with --history"},
	} {
		if r := meshbench(t, time.Minute, c.args...); r.code != 2 || !strings.Contains(r.stderr, c.says) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 saying %q", c.args, r.code, r.stderr, c.says)
		}
	}
	// A run without candidate rows has nothing to pair.
	plain := filepath.Join(dir, "plain")
	if r := meshbench(t, 3*time.Minute, "run", "gate", "--trials", "1", "--duration", "1s", "--qps", "100", "--out", plain); r.code != 0 {
		t.Fatalf("plain run: exit %d\n%s", r.code, r.stderr)
	}
	if r := meshbench(t, time.Minute, "compare", "--paired", plain); r.code != 2 || !strings.Contains(r.stderr, "has no MESH-candidate row") {
		t.Errorf("compare --paired on a run without candidate rows: exit %d\n%s", r.code, r.stderr)
	}
}
