package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/smps"
)

// gateRuns makes the two real runs the report, compare and publish tests
// share: A, the gate scenario as is, and B, the same with 50 ms of service
// time in the server, 8 and 4 trials. The regression is one no plausible
// noise hides: every B request takes at least 50 ms, so each B trial's p99
// does, while A's p99 is a few milliseconds at most even with a core busy
// elsewhere; 32 connections keep 300 rps within reach of B's server. (3 ms
// was not enough: on a busy machine A's p99 reached B's, and the gate was
// inconclusive.) A, the base of the auto gates, has 8 trials: its spread
// sets their limits, and with 4 a busy machine's (61% on the sidecar's
// p50, in a CI run beside other tests) put the limit at x77, above B's
// x43, for an inconclusive gate; on 7 degrees of freedom rather than 3
// the same spread gives x11. The gate's statistics on fixed data are
// tested in package reports.
func gateRuns(t *testing.T) (a, b string) {
	t.Helper()
	dir := t.TempDir()
	show := meshbench(t, time.Minute, "scenarios", "show", "gate")
	if show.code != 0 {
		t.Fatalf("scenarios show gate: %s", show.stderr)
	}
	slow := strings.Replace(show.stdout, "serviceTime: 0s", "serviceTime: 50ms", 1)
	if slow == show.stdout {
		t.Fatal("the gate scenario has no serviceTime to change")
	}
	files := map[string]string{"a.yaml": show.stdout, "b.yaml": slow}
	for name, doc := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for side, trials := range map[string]string{"a": "8", "b": "4"} {
		out := filepath.Join(dir, side)
		r := meshbench(t, 3*time.Minute, "run", filepath.Join(dir, side+".yaml"), "--trials", trials, "--duration", "1s", "--qps", "300", "--connections", "32", "--out", out)
		if r.code != 0 {
			t.Fatalf("run %s: exit %d\n%s", side, r.code, r.stderr)
		}
	}
	return filepath.Join(dir, "a"), filepath.Join(dir, "b")
}

// TestIntegrationReportCompareAndPublish drives report, compare and
// publish on real runs: exit codes, every format, the HTML report in a
// real headless Chromium, and publishing to a directory and over HTTP.
func TestIntegrationReportCompareAndPublish(t *testing.T) {
	integration(t)
	a, b := gateRuns(t)
	tmp := t.TempDir()

	t.Run("compare", func(t *testing.T) {
		// p50, not p99: 50 ms more service time moves every request, and
		// a busy machine's p99 (tens of ms on its own, in 4 trials) made
		// the p99 interval straddle the limit (seen in a CI run with the
		// other CPU burnt: p99 x3.3 [0.69, 19.3], p50 x28.6 [19.6, 45.5]).
		r := meshbench(t, time.Minute, "compare", a, b, "--gate", "p50:+5%,errors:0")
		if r.code != 1 || !strings.Contains(r.stdout, "FAIL") || !strings.Contains(r.stdout, "meshbench/sidecar@300") {
			t.Errorf("50 ms more service time: exit %d, want 1 (fail)\n%s%s", r.code, r.stdout, r.stderr)
		}
		// The baseline got the 50 ms too, but no proxy runs there: its rule
		// is inconclusive, with the reason.
		if !strings.Contains(r.stdout, "no-mesh baseline moved") {
			t.Errorf("the baseline row's verdict does not say that the baseline moved:\n%s", r.stdout)
		}
		if r := meshbench(t, time.Minute, "compare", a, a, "--gate", "errors:0"); r.code != 0 {
			t.Errorf("A against itself with errors:0: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		// SMPS input: one trial a side cannot support an interval, so the
		// gate is inconclusive (3), unless told how to end.
		one := func(dir string) string {
			m, _ := filepath.Glob(filepath.Join(dir, "trials", "meshbench-sidecar", "trial-01", "smp-result.json"))
			if len(m) != 1 {
				t.Fatalf("no SMPS result in %s", dir)
			}
			return m[0]
		}
		for policy, want := range map[string]int{"inconclusive": 3, "fail": 1, "pass": 0} {
			r := meshbench(t, time.Minute, "compare", one(a), one(b), "--gate", "p99:+5%", "--inconclusive", policy)
			if r.code != want {
				t.Errorf("one trial a side, --inconclusive=%s: exit %d, want %d\n%s%s", policy, r.code, want, r.stdout, r.stderr)
			}
		}
		r = meshbench(t, time.Minute, "compare", a, b, "--gate", "default", "--format", "junit")
		var suites struct {
			Failures int `xml:"failures,attr"`
			Tests    int `xml:"tests,attr"`
		}
		if err := xml.Unmarshal([]byte(r.stdout), &suites); err != nil || suites.Failures == 0 || suites.Tests != 8 {
			t.Errorf("junit: %+v, %v\n%s", suites, err, r.stdout)
		}
		r = meshbench(t, time.Minute, "compare", a, b, "--gate", "default", "--format", "json")
		var js struct{ Final string }
		if err := json.Unmarshal([]byte(r.stdout), &js); err != nil || js.Final != "fail" {
			t.Errorf("json: %+v, %v", js, err)
		}
		md := filepath.Join(tmp, "gate.md")
		if r := meshbench(t, time.Minute, "compare", a, b, "--gate", "default", "--format", "md", "--out", md); r.code != 1 {
			t.Errorf("md: exit %d", r.code)
		}
		if data, _ := os.ReadFile(md); !strings.HasPrefix(string(data), "## meshbench compare: FAIL") {
			t.Errorf("md output:\n%s", data)
		}
		if r := meshbench(t, time.Minute, "compare", a, b, "--gate", "p99:5%"); r.code != 2 || !strings.Contains(r.stderr, "flag --gate") {
			t.Errorf("unsigned limit: exit %d, %s", r.code, r.stderr)
		}
		// auto: limits from A's own noise; 50 ms on every request is far
		// beyond any of them. The baseline is reported, not gated.
		r = meshbench(t, time.Minute, "compare", a, b, "--gate", "auto")
		if r.code != 1 || !strings.Contains(r.stdout, "(auto: base spread") || !strings.Contains(r.stdout, "auto rules do not gate the no-mesh baseline") ||
			!strings.Contains(r.stdout, "at 80% power") {
			t.Errorf("--gate auto, 50 ms more service time: exit %d, want 1 (fail), with each limit and detectable change\n%s%s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("gate plan", func(t *testing.T) {
		r := meshbench(t, time.Minute, "gate", "plan", a, "--gate", "auto", "--detect", "p50:+10%,qps:-20%")
		if r.code != 0 || !strings.Contains(r.stdout, "meshbench/sidecar@300") || !strings.Contains(r.stdout, "p50:auto") ||
			!strings.Contains(r.stdout, "p50:+10%: ") || !strings.Contains(r.stdout, "no-mesh baseline") ||
			!strings.Contains(r.stdout, "qps:-20%: no relative rule of the gate on qps") {
			t.Errorf("gate plan: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		r = meshbench(t, time.Minute, "gate", "plan", a, "--format", "json")
		var plan struct {
			Rows []struct {
				Key   string
				Rules []struct {
					Rule       string
					Spread     float64
					Detectable float64
				}
			}
		}
		if err := json.Unmarshal([]byte(r.stdout), &plan); err != nil || r.code != 0 || len(plan.Rows) != 1 || len(plan.Rows[0].Rules) != 3 {
			t.Fatalf("gate plan --format json: exit %d, %+v, %v\n%s", r.code, plan, err, r.stdout)
		}
		for _, rule := range plan.Rows[0].Rules {
			// 4 real trials always differ a little, and a fixed limit's
			// detectable change lies beyond the limit.
			if !(rule.Spread > 0) || !(rule.Detectable > 1.05) {
				t.Errorf("%s: spread %g, detectable x%g", rule.Rule, rule.Spread, rule.Detectable)
			}
		}
	})

	t.Run("ci gate", func(t *testing.T) { testCIGate(t, a, b) })
	t.Run("history", func(t *testing.T) { testHistory(t, a, b) })

	t.Run("report", func(t *testing.T) {
		r := meshbench(t, time.Minute, "report", a, "--slo", "errors == 0", "--slo", "p99 < 10s")
		if r.code != 0 || !strings.Contains(r.stdout, "95% bootstrap intervals") || !strings.Contains(r.stdout, "Harness floor") {
			t.Errorf("text report: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		r = meshbench(t, time.Minute, "report", a, "--format", "junit", "--slo", "p99 < 1us for sidecar")
		if r.code != 1 || !strings.Contains(r.stdout, `<failure`) {
			t.Errorf("an objective that cannot hold: exit %d\n%s", r.code, r.stdout)
		}
		page := filepath.Join(tmp, "report.html")
		if r := meshbench(t, time.Minute, "report", a, "--format", "html", "--out", page); r.code != 0 {
			t.Fatalf("html report: exit %d\n%s", r.code, r.stderr)
		}
		checkInChromium(t, page)
	})

	// The environment, the calibration's three documents, and three per
	// trial: 2 modes of 8 trials in A, of 4 in B.
	const docsA, docsB = 1 + 3 + 2*8*3, 1 + 3 + 2*4*3
	t.Run("publish", func(t *testing.T) {
		index := filepath.Join(tmp, "index")
		for _, run := range []string{a, b, a} {
			if r := meshbench(t, time.Minute, "publish", run, "--to", index); r.code != 0 {
				t.Fatalf("publish %s: exit %d\n%s", run, r.code, r.stderr)
			}
		}
		idx, err := smps.ReadIndex(index)
		if err != nil || len(idx.Runs) != 2 {
			t.Fatalf("index after publishing a, b, a: %+v, %v", idx, err)
		}
		docs := map[int]int{}
		for _, e := range idx.Runs {
			docs[len(e.Documents)]++
			if _, err := os.Stat(filepath.Join(index, e.Report)); err != nil {
				t.Errorf("entry %+v: report %v", e, err)
			}
		}
		if docs[docsA] != 1 || docs[docsB] != 1 {
			t.Errorf("index entries' documents (count: entries) %v, want one of A's %d and one of B's %d", docs, docsA, docsB)
		}
		page, _ := os.ReadFile(filepath.Join(index, smps.IndexPage))
		history, err := os.ReadFile(filepath.Join(index, smps.HistoryPage))
		if err != nil || !strings.Contains(string(page), `href="history.html"`) || !strings.Contains(string(history), "history of "+index+": 2 runs") {
			t.Errorf("history page of the index: %v\n%.1000s", err, history)
		}
		var got smps.Upload
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if err := json.Unmarshal(body, &got); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
			}
		}))
		defer srv.Close()
		if r := meshbench(t, time.Minute, "publish", a, "--to", srv.URL+"/results", "--header", "Authorization: Bearer t"); r.code != 0 || len(got.Documents) != docsA {
			t.Errorf("publish over HTTP: exit %d, %d documents\n%s", r.code, len(got.Documents), r.stderr)
		}
		srv.Close()
		if r := meshbench(t, time.Minute, "publish", a, "--to", srv.URL, "--attempts", "2"); r.code != 1 || !strings.Contains(r.stderr, "gave up after 2 attempts") {
			t.Errorf("publish to a closed server: exit %d\n%s", r.code, r.stderr)
		}
	})
}

var chartsDrawn = regexp.MustCompile(`data-charts-drawn="(\d+)/(\d+)"`)

// checkInChromium loads the page in headless Chromium with every host name
// unresolvable (a self-contained page needs none), asserts that every
// chart drew and that nothing failed in the console, and keeps a
// screenshot as an artifact ($ARTIFACTS_DIR, or the system temp dir).
func checkInChromium(t *testing.T, page string) {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		if os.Geteuid() == 0 {
			t.Fatalf("chromium is missing although scripts/setup.sh installs it as root: %v", err)
		}
		t.Skipf("chromium is not installed and this is not root (scripts/setup.sh installs it as root): cannot render the HTML report")
	}
	chromium := func(args ...string) (string, string) {
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
			"--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
			"--user-data-dir=" + t.TempDir()}
		cmd := exec.Command(bin, append(base, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
		}
		return stdout.String(), stderr.String()
	}
	consoleErrors := func(log string) []string {
		var out []string
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, ":CONSOLE") || strings.Contains(line, "Uncaught") {
				out = append(out, line)
			}
		}
		return out
	}
	// A control page with a script error: the check must see it.
	bad := filepath.Join(t.TempDir(), "bad.html")
	_ = os.WriteFile(bad, []byte(`<html><body><script>console.error("control"); undefinedFunction();</script></body></html>`), 0o644)
	if _, log := chromium("--dump-dom", "file://"+bad); len(consoleErrors(log)) == 0 {
		t.Fatalf("the console check does not see a control page's errors; chromium logged:\n%s", log)
	}

	dom, log := chromium("--dump-dom", "file://"+page)
	m := chartsDrawn.FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("the page's script did not run (no data-charts-drawn):\n%.2000s", dom)
	}
	drawn, _ := strconv.Atoi(m[1])
	all, _ := strconv.Atoi(m[2])
	if drawn != all || all < 4 {
		t.Errorf("%d of %d charts drawn, want all of at least 4 (the page's script checks each chart's rendered box)", drawn, all)
	}
	for _, id := range []string{"percentiles-300", "added-latency", "cpu", "memory"} {
		if !strings.Contains(dom, `id="`+id+`"`) {
			t.Errorf("rendered page lacks the %s chart", id)
		}
	}
	if errs := consoleErrors(log); len(errs) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(errs, "\n"))
	}
	dir := os.Getenv("ARTIFACTS_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "meshbench-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "report.png")
	chromium("--window-size=1200,4000", "--screenshot="+shot, "file://"+page)
	data, err := os.ReadFile(shot)
	if err != nil || !bytes.HasPrefix(data, []byte("\x89PNG")) || len(data) < 20000 {
		t.Errorf("screenshot %s: %d bytes, %v", shot, len(data), err)
	}
	t.Logf("screenshot of the HTML report: %s", shot)
}

// TestResultsInputErrors: results that are malformed, empty or missing are
// bad input for compare, report and publish (exit 2, naming the file, no
// usage hint for a file), never the gate's exit 1.
func TestResultsInputErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, file, content string) string {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if file != "" {
			if err := os.WriteFile(filepath.Join(d, file), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	cases := []struct {
		dir, says string
		hint      bool
	}{
		{write("not-smps", "smp-result.json", `{"not":"smps"}`), `not-smps/smp-result.json: not an SMPS PerformanceTestResult document`, false},
		{write("garbage", "smp-result.json", "garbage{"), "garbage/smp-result.json: not an SMPS PerformanceTestResult document", false},
		{write("empty", "", ""), "neither a results directory (no manifest.json) nor SMPS results (no smp-result.json)", false},
		{write("bad-manifest", "manifest.json", "{"), "bad-manifest", false},
		{filepath.Join(dir, "missing"), "no such file or directory", true},
	}
	for _, c := range cases {
		for _, args := range [][]string{
			{"compare", c.dir, c.dir, "--gate", "default"},
			{"gate", "plan", c.dir},
			{"report", c.dir},
			{"publish", c.dir, "--to", filepath.Join(dir, "index")},
		} {
			r := meshbench(t, time.Minute, args...)
			if args[0] == "publish" && !strings.Contains(c.dir, "manifest") && !strings.Contains(c.dir, "missing") {
				// publish takes a results directory only: anything else
				// is "not a results directory".
				if r.code != 2 || !strings.Contains(r.stderr, "is not a results directory") {
					t.Errorf("%v: exit %d, %s", args, r.code, r.stderr)
				}
				continue
			}
			if r.code != 2 || !strings.Contains(r.stderr, c.says) || strings.Contains(r.stderr, "meshbench --help") != c.hint {
				t.Errorf("%v: exit %d, stderr %q; want exit 2 saying %q (usage hint: %v)", args, r.code, r.stderr, c.says, c.hint)
			}
		}
	}
}
