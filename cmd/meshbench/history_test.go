package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// republish publishes n copies of a real run to index, each under its own
// run id and an hour after start, so that an index holds a series of real
// SMPS documents; it returns the time after the last copy.
func republish(t *testing.T, run, index, tag string, n int, start time.Time) time.Time {
	t.Helper()
	for i := range n {
		dir := filepath.Join(t.TempDir(), "run")
		if out, err := exec.Command("cp", "-a", run, dir).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v\n%s", err, out)
		}
		path := filepath.Join(dir, "manifest.json")
		var m map[string]any
		if err := readJSONFile(path, &m); err != nil {
			t.Fatal(err)
		}
		m["runID"] = fmt.Sprintf("%s-%02d", tag, i)
		m["startTime"] = start.Format(time.RFC3339)
		data, _ := json.Marshal(m)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if r := meshbench(t, time.Minute, "publish", dir, "--to", index, "--no-report"); r.code != 0 {
			t.Fatalf("publish copy %d of %s: exit %d\n%s", i, run, r.code, r.stderr)
		}
		start = start.Add(time.Hour)
	}
	return start
}

// testHistory drives history and compare --history on series of real
// runs: A (the gate scenario) published 6 times, then B (50 ms of service
// time in the server, a change no noise hides) 6 times. 6 and 6 are the
// fewest copies whose permutation test can reach p < 0.01 (2 of the 924
// arrangements separate them).
func testHistory(t *testing.T, a, b string) {
	dir := t.TempDir()
	flat, both := filepath.Join(dir, "flat"), filepath.Join(dir, "both")
	start := time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC)
	republish(t, a, flat, "a", 6, start)
	// A itself too, under its own run id: compare --history leaves it out
	// when it is the candidate.
	if r := meshbench(t, time.Minute, "publish", a, "--to", flat); r.code != 0 {
		t.Fatalf("publish a: exit %d\n%s", r.code, r.stderr)
	}
	next := republish(t, a, both, "a", 6, start)
	republish(t, b, both, "b", 6, next)

	r := meshbench(t, time.Minute, "history", flat, "--fail-on-regression")
	if r.code != 0 || !strings.Contains(r.stdout, "0 change points") || !strings.Contains(r.stdout, ": 7 runs") {
		t.Errorf("history of 7 copies of one run: exit %d, want 0 and no change point\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = meshbench(t, time.Minute, "history", both, "--fail-on-regression", "--metric", "p99,p50")
	if r.code != 1 || !strings.Contains(r.stdout, "REGRESSION") || !strings.Contains(r.stdout, "b-00") || !strings.Contains(r.stderr, "regressed: ") {
		t.Errorf("history of A then B: exit %d, want 1 and a regression from run b-00\n%s%s", r.code, r.stdout, r.stderr)
	}
	page := filepath.Join(dir, "history.html")
	if r := meshbench(t, time.Minute, "history", both, "--format", "html", "--out", page); r.code != 0 {
		t.Errorf("history --format html: exit %d\n%s", r.code, r.stderr)
	} else if html, _ := os.ReadFile(page); !strings.Contains(string(html), `class="cp regression"`) || strings.Count(string(html), "<svg") < 3 {
		t.Errorf("history page lacks its charts or change point marks:\n%.2000s", html)
	}
	var report struct {
		Runs   int `json:"runs"`
		Series []struct {
			Metric  string `json:"metric"`
			Key     string `json:"key"`
			Changes []struct {
				Index      int  `json:"index"`
				Regression bool `json:"regression"`
			} `json:"changes"`
		} `json:"series"`
	}
	r = meshbench(t, time.Minute, "history", both, "--format", "json")
	if err := json.Unmarshal([]byte(r.stdout), &report); err != nil || r.code != 0 || report.Runs != 12 {
		t.Fatalf("history --format json: exit %d, %v, %d runs\n%s", r.code, err, report.Runs, r.stderr)
	}
	found := false
	for _, s := range report.Series {
		if s.Metric == "p99" && strings.Contains(s.Key, "sidecar") {
			found = len(s.Changes) == 1 && s.Changes[0].Index == 6 && s.Changes[0].Regression
		}
	}
	if !found {
		t.Errorf("no sidecar p99 series with its one regression at run 6: %+v", report.Series)
	}

	// One candidate against the series of A: B fails, A itself passes
	// (its values are the series' own, and its run is left out by id).
	r = meshbench(t, time.Minute, "compare", "--history", flat, b, "--gate", "auto")
	if r.code != 1 || !strings.Contains(r.stdout, "7 runs vs 4 trials") || !strings.Contains(r.stdout, "run-to-run spread") {
		t.Errorf("compare --history FLAT B --gate auto: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = meshbench(t, time.Minute, "compare", "--history", flat, a, "--gate", "auto", "--format", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"baseRuns": 6`) {
		t.Errorf("compare --history FLAT A --gate auto: exit %d, want 0\n%.3000s%s", r.code, r.stdout, r.stderr)
	}

	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"history", filepath.Join(dir, "none")}, "is not a results index (no index.json)"},
		{[]string{"history", a}, "is not a results index (no index.json)"},
		{[]string{"history", flat, "--metric", "p99,nope"}, `flag --metric: unknown metric "nope"`},
		{[]string{"history", flat, "--alpha", "0.0001", "--permutations", "999"}, "flag --permutations: 999 shuffles cannot reach p below --alpha"},
		{[]string{"history", flat, "--scenario", "nope"}, `flag --scenario: `},
		{[]string{"history", flat, "--format", "pdf"}, "flag --format"},
		{[]string{"compare", "--history", flat, a, b}, "flag --history: give only CANDIDATE"},
		{[]string{"compare", "--history", flat, b, "--window", "2"}, "flag --window: must be between 3"},
		{[]string{"compare", a, b, "--window", "5"}, "flag --window: only applies with --history"},
		{[]string{"compare", "--history", a, b}, "is not a results index"},
		{[]string{"compare", "--history", flat, b, "--scenario", "nope"}, `has no runs of scenario "nope"`},
	} {
		if r := meshbench(t, time.Minute, c.args...); r.code != 2 || !strings.Contains(r.stderr, c.says) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 saying %q", c.args, r.code, r.stderr, c.says)
		}
	}
}
