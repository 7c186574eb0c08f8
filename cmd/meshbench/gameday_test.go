package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/runner/results"
)

// TestIntegrationGameDayPodKill runs the built-in gameday-podkill,
// shortened to 11 seconds (two kills, at 5 s and 10 s): the server's three
// pods behind the baseline's kube-proxy-style balancing, the own mesh's
// three modes and HAProxy's sidecars. Every row gets a verdict on both
// probes, a resilience score, both kills (each of one pod of the server)
// with their times, and a timeline in the HTML report; the own mesh,
// which retries a failed connection on another pod, keeps every second
// available.
func TestIntegrationGameDayPodKill(t *testing.T) {
	integration(t)
	if os.Geteuid() != 0 {
		t.Skip("replicated services need the netns network, which needs root")
	}
	requireReferenceProxies(t)
	out := filepath.Join(t.TempDir(), "gameday")
	_, trials := runAll(t, 10*time.Minute, out, "run", "gameday-podkill", "--duration", "11s", "--out", out)
	if len(trials) != 5 {
		t.Fatalf("%d trials, want 5 (baseline, the own mesh's three modes, HAProxy)", len(trials))
	}
	pods := []string{"server", "server-1", "server-2"}
	proxied := map[string]bool{}
	for _, tr := range trials {
		v := tr.Verdict
		if v == nil || len(v.Probes) != 2 || len(v.Faults) != 2 || v.Score < 0 || v.Score > 100 {
			t.Errorf("%s: verdict %+v", tr.Key(), v)
			continue
		}
		if len(tr.Faults) != 2 {
			t.Fatalf("%s: faults %+v, want the two kills", tr.Key(), tr.Faults)
		}
		for _, f := range tr.Faults {
			if len(f.Targets) != 1 || !slices.Contains(pods, f.Targets[0]) || f.Error != "" || !strings.Contains(f.Executor, "replacement") {
				t.Errorf("%s: kill %+v, want one pod of the server killed and replaced", tr.Key(), f)
			}
		}
		if len(tr.Series) < 10 {
			t.Errorf("%s: series of %d seconds", tr.Key(), len(tr.Series))
		}
		// The own mesh retries a killed pod's requests on another: at
		// least 99.9% succeed over the trial (a request beyond the
		// retry budget may fail on a busy machine).
		if tr.Mesh == "meshbench" && tr.Errors*1000 > tr.Requests {
			t.Errorf("%s: %d of %d requests failed: the own mesh retries a killed pod's requests on another", tr.Key(), tr.Errors, tr.Requests)
		}
		var served int64
		for _, sc := range tr.Services {
			if sc.Requests > 0 {
				served += sc.Requests
			}
		}
		if served == 0 || len(tr.Services) != 3 {
			t.Errorf("%s: services %+v: want the three pods, serving", tr.Key(), tr.Services)
		}
		// The proxies' use second by second: a figure for (almost) every
		// second, and work done while the load flowed through them.
		for _, u := range tr.Components {
			if u.Class != results.ClassProxy {
				continue
			}
			proxied[tr.Key()] = true
			var cpu float64
			for _, s := range u.Seconds {
				cpu += s.CPUMillicores
			}
			if len(u.Seconds) < 9 || cpu <= 0 || u.Seconds[0].MemoryMB <= 0 {
				t.Errorf("%s: %s's seconds %+v: want one per second of the window, with CPU and memory", tr.Key(), u.Name, u.Seconds)
			}
		}
	}
	if len(proxied) != 3 {
		t.Errorf("rows with proxies %v, want three (the own sidecar and per-node modes, HAProxy)", proxied)
	}
	html := meshbench(t, time.Minute, "report", out, "--format", "html")
	if html.code != 0 && html.code != 1 {
		t.Fatalf("report: exit %d\n%s", html.code, html.stderr)
	}
	page := html.stdout
	i := strings.Index(page, `id="timeline-p99"`)
	if i < 0 || !strings.Contains(page, "<h2>Game day</h2>") {
		t.Fatalf("the report lacks the game day or its timeline")
	}
	chart := page[i : i+strings.Index(page[i:], "</svg>")]
	if n := strings.Count(chart, `class="series"`); n != 5 {
		t.Errorf("timeline: %d lines, want one per row (5)", n)
	}
	if n := strings.Count(chart, `class="fault"`); n != 2 {
		t.Errorf("timeline: %d kills shaded, want 2", n)
	}
	if i := strings.Index(page, `id="timeline-proxy-cpu"`); i < 0 {
		t.Errorf("the report lacks the proxies' CPU second by second")
	} else if n := strings.Count(page[i:i+strings.Index(page[i:], "</svg>")], `class="series"`); n != len(proxied) {
		t.Errorf("the proxies' CPU timeline: %d lines, want one per row with proxies (%d)", n, len(proxied))
	}
	md := meshbench(t, time.Minute, "report", out, "--format", "md")
	for _, tr := range trials {
		key := tr.Key() + "@300"
		if !strings.Contains(md.stdout, "| "+key+" | ") {
			t.Errorf("the Markdown report has no game-day row for %s:\n%s", key, md.stdout)
		}
	}
}
