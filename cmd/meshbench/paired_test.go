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
// test's meshbench with extra arguments after the proxy's own: a build
// of the proxy that is provably the one started, and can be told to
// behave otherwise.
func candidate(t *testing.T, dir, name, extra string) (bin, calls string) {
	t.Helper()
	bin, calls = filepath.Join(dir, name), filepath.Join(dir, name+".calls")
	script := fmt.Sprintf("#!/bin/sh\necho \"$*\" >> %s\nexec %s \"$@\" %s\n", calls, meshbenchBin, extra)
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, calls
}

// TestIntegrationCandidateBinary runs the gate scenario with a candidate
// build beside the proxy, twice: a candidate that is the same code (A/A),
// and one whose Go collector runs at every 1% of heap growth (GOGC=1),
// which multiplies the proxies' CPU: an effect no noise hides, and the
// paired gate must fail it. compare --paired pairs the rows by trial.
func TestIntegrationCandidateBinary(t *testing.T) {
	integration(t)
	dir := t.TempDir()
	same, sameCalls := candidate(t, dir, "same", "")
	gc, _ := candidate(t, dir, "gc1", "--gogc 1")

	run := func(bin, out string) {
		t.Helper()
		r := meshbench(t, 4*time.Minute, "run", "gate", "--trials", "6", "--duration", "1s", "--qps", "300", "--candidate-binary", bin, "--out", out)
		if r.code != 0 || !strings.Contains(r.stdout, "meshbench-candidate") {
			t.Fatalf("run --candidate-binary %s: exit %d, want 0 and a meshbench-candidate row\n%s%s", bin, r.code, r.stdout, r.stderr)
		}
	}
	aa, ab := filepath.Join(dir, "aa"), filepath.Join(dir, "ab")
	run(same, aa)
	calls, _ := os.ReadFile(sameCalls)
	if n := strings.Count(string(calls), "proxy --ads"); n < 6 {
		t.Errorf("the candidate build started %d proxies over 6 trials, want at least 6:\n%s", n, calls)
	}

	var c struct {
		Paired bool `json:"paired"`
		Final  string
		Rows   []struct {
			Key             string `json:"key"`
			BaseTrials      int    `json:"baseTrials"`
			CandidateTrials int    `json:"candidateTrials"`
			Verdicts        []struct {
				Rule, Outcome, Detail string
			} `json:"verdicts"`
		} `json:"rows"`
	}
	r := meshbench(t, time.Minute, "compare", "--paired", aa, "--gate", "proxy-cpu:auto", "--format", "json")
	if err := json.Unmarshal([]byte(r.stdout), &c); err != nil || r.code == 2 || !c.Paired || len(c.Rows) != 1 {
		t.Fatalf("compare --paired (A/A): exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if row := c.Rows[0]; row.Key != "meshbench/sidecar@300" || row.BaseTrials != 6 || row.CandidateTrials != 6 ||
		len(row.Verdicts) != 1 || !strings.Contains(row.Verdicts[0].Detail, "paired spread") {
		t.Errorf("paired row: %+v", row)
	}

	run(gc, ab)
	r = meshbench(t, time.Minute, "compare", "--paired", ab, "--gate", "proxy-cpu:+10%")
	if r.code != 1 || !strings.Contains(r.stdout, "paired by trial") {
		t.Errorf("compare --paired, candidate with GOGC=1: exit %d, want 1 (proxy CPU regressed)\n%s%s", r.code, r.stdout, r.stderr)
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
