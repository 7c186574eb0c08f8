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

// TestIntegrationGameDayProbes runs the active probes under a full
// partition of the server (3 s of a 9 s window) on the baseline, the own
// sidecar and HAProxy's: the http probe's request, sent through each
// row's client path, answers 200 before the partition and fails every
// time inside it; each mesh's metrics probe reads its own proxies'
// Prometheus counters (a rate of answered requests, above 0 before the
// partition, not inside it) and is not applicable to the other rows; the
// command probe runs on the host with the row's environment.
func TestIntegrationGameDayProbes(t *testing.T) {
	integration(t)
	if os.Geteuid() != 0 {
		t.Skip("a partition needs the netns network, which needs root")
	}
	requireReferenceProxies(t)
	sc := filepath.Join(t.TempDir(), "probes.yaml")
	if err := os.WriteFile(sc, []byte(`apiVersion: meshbench/v1
name: probes
topology:
  server:
    name: server
meshes:
  - {name: none, mode: baseline}
  - {name: meshbench, mode: sidecar}
  - {name: haproxy, mode: sidecar}
load:
  qps: 100
  connections: 2
  duration: 9s
  warmup: 500ms
trials: 1
faults:
  - at: 3s
    apiVersion: chaos-mesh.org/v1alpha1
    kind: NetworkChaos
    metadata:
      name: cut
    spec:
      action: partition
      mode: all
      direction: both
      duration: 3s
      selector:
        labelSelectors:
          app: server
probes:
  - name: health-check
    type: http
    path: /
    timeout: 500ms
  - name: own-answers
    type: prometheus
    mesh: meshbench
    metric: meshbench_requests_total
    labels: {direction: outbound, response_code: "200"}
    rate: true
    comparator: {criteria: ">", value: "0"}
  - name: haproxy-answers
    type: prometheus
    mesh: haproxy
    metric: haproxy_backend_http_responses_total
    labels: {code: 2xx}
    rate: true
    comparator: {criteria: ">", value: "0"}
  - name: row
    type: command
    command: ["sh", "-c", "echo $MESHBENCH_MESH/$MESHBENCH_MODE"]
    comparator: {criteria: matches, value: "^(none/baseline|meshbench/sidecar|haproxy/sidecar)$"}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "probes")
	_, trials := runAll(t, 5*time.Minute, out, "run", sc, "--out", out)
	if len(trials) != 3 {
		t.Fatalf("%d trials, want 3", len(trials))
	}
	metricsProbe := map[string]string{"none": "", "meshbench": "own-answers", "haproxy": "haproxy-answers"}
	for _, tr := range trials {
		if len(tr.Faults) != 1 || tr.Faults[0].Error != "" || tr.Verdict == nil {
			t.Fatalf("%s: faults %+v, verdict %+v", tr.Key(), tr.Faults, tr.Verdict)
		}
		cut := tr.Faults[0]
		readings := map[string][]results.ProbeReading{}
		for _, r := range tr.ProbeReadings {
			readings[r.Probe] = append(readings[r.Probe], r)
		}
		// A reading taken in the partition (from its start to 600 ms
		// before its end, time for the 500 ms timeout) fails; one before
		// it holds.
		judge := func(probe string, least int, inside func(r results.ProbeReading) bool) {
			before, in := 0, 0
			for _, r := range readings[probe] {
				switch {
				case r.At < cut.Start-0.1 && r.OK:
					before++
				case inside(r):
					in++
					if r.OK {
						t.Errorf("%s: %s held at %.2fs, inside the partition (%.2f-%.2fs): %+v", tr.Key(), probe, r.At, cut.Start, cut.End, r)
					}
				}
			}
			if before == 0 || in < least {
				t.Errorf("%s: %s: %d readings held before the partition, %d inside; want some before and %d inside: %+v", tr.Key(), probe, before, in, least, readings[probe])
			}
		}
		judge("health-check", 2, func(r results.ProbeReading) bool { return r.At > cut.Start+0.05 && r.At < cut.End-0.6 })
		for _, r := range readings["health-check"] {
			if r.OK && !strings.HasPrefix(r.Value, "200 in ") {
				t.Errorf("%s: health-check reading %+v", tr.Key(), r)
			}
		}
		// A rate reading covers the second before it: inside when that
		// second is.
		if p := metricsProbe[tr.Mesh]; p != "" {
			judge(p, 1, func(r results.ProbeReading) bool { return r.At-1 > cut.Start+0.05 && r.At < cut.End })
			for _, r := range readings[p] {
				if strings.Contains(r.Error, "no proxy exposes") {
					t.Errorf("%s: %s: %s", tr.Key(), p, r.Error)
				}
			}
		}
		for _, pr := range tr.Verdict.Probes {
			applicable := pr.Name == "health-check" || pr.Name == "row" || pr.Name == metricsProbe[tr.Mesh]
			if pr.NotApplicable == applicable {
				t.Errorf("%s: probe %+v: applicable %v", tr.Key(), pr, applicable)
			}
		}
		if n := len(readings["row"]); n < 7 {
			t.Errorf("%s: %d command readings in 9 s", tr.Key(), n)
		}
		for _, r := range readings["row"] {
			if !r.OK || r.Value != tr.Mesh+"/"+tr.Mode {
				t.Errorf("%s: command reading %+v", tr.Key(), r)
			}
		}
		if tr.Verdict.Pass {
			t.Errorf("%s: the verdict passed although the health check failed in the partition", tr.Key())
		}
	}
}

// TestIntegrationGameDayLatency delays one of the server's three pods by
// 200 ms for 6 s of a 10 s window, through the own sidecar (least request
// weighted by each pod's latency EWMA) and HAProxy's (round robin), and
// counts what each pod served: round robin keeps sending the slow pod its
// third; least request routes around it (a pod's share is a routing
// decision, not a latency figure a busy machine could blur).
func TestIntegrationGameDayLatency(t *testing.T) {
	integration(t)
	if os.Geteuid() != 0 {
		t.Skip("replicated services need the netns network, which needs root")
	}
	requireReferenceProxies(t)
	sc := shortened(t, "gameday-latency", map[string]string{
		"  - name: none\n    mode: baseline\n": "", "  - name: meshbench\n    mode: per-node\n": "", "  - name: meshbench\n    mode: proxyless\n": "",
		"duration: 30s": "duration: 10s", "qps: 300": "qps: 200", "at: 10s": "at: 2s", "      duration: 10s": "      duration: 6s",
	})
	out := filepath.Join(t.TempDir(), "latency")
	_, trials := runAll(t, 5*time.Minute, out, "run", sc, "--out", out)
	if len(trials) != 2 {
		t.Fatalf("%d trials, want 2", len(trials))
	}
	for _, tr := range trials {
		if len(tr.Faults) != 1 || len(tr.Faults[0].Targets) != 1 || tr.Faults[0].Error != "" || !strings.Contains(tr.Faults[0].Executor, "toxiproxy") {
			t.Fatalf("%s: faults %+v, want one pod delayed by toxiproxy", tr.Key(), tr.Faults)
		}
		// What each pod served in the whole seconds of its own counts
		// inside the delay (from 500 ms after it started).
		delay := tr.Faults[0]
		slow := delay.Targets[0]
		var all, slowN int64
		for _, pod := range []string{"server", "server-1", "server-2"} {
			for _, s := range perSecond(t, tr, pod) {
				if s.from >= delay.Start+0.5 && s.to <= delay.End {
					all += s.n
					if pod == slow {
						slowN += s.n
					}
				}
			}
		}
		if all < 100 {
			// Round robin's share needs some requests: HAProxy's clients
			// wait on the slow pod's answers (about 90 a second here).
			t.Fatalf("%s: %d requests served inside the 6 s delay, too few to count shares", tr.Key(), all)
		}
		share := float64(slowN) / float64(all)
		t.Logf("%s: inside the delay, the delayed pod %s served %d of %d requests (%.1f%%)", tr.Key(), slow, slowN, all, 100*share)
		switch tr.Mesh {
		case "haproxy":
			if share < 0.25 {
				t.Errorf("%s: round robin gave the delayed pod %.1f%% of the requests inside the delay, want about a third", tr.Key(), 100*share)
			}
		case "meshbench":
			if share > 0.05 {
				t.Errorf("%s: least request gave the delayed pod %.1f%% of the requests inside the delay, want it routed around", tr.Key(), 100*share)
			}
		}
	}
}

// TestIntegrationGameDayCanary runs gameday-canary shortened on the own
// sidecar and proxyless (the abort in the application's own fault
// filter): an 80/20 TrafficSplit whose canary fails every request from
// 2 s, rolled back at 16 s (14 s after: a policy change after a long
// quiet, which once met a reset connection to the control plane). While
// the canary fails, about a fifth of each second's requests fail (the
// split's weight, not all of them); after the rollback none do.
func TestIntegrationGameDayCanary(t *testing.T) {
	integration(t)
	if os.Geteuid() != 0 {
		t.Skip("HTTPChaos's interposer needs the netns network, which needs root")
	}
	sc := shortened(t, "gameday-canary", map[string]string{
		"  - {name: meshbench, mode: per-node}\n": "", "duration: 30s": "duration: 18s", "qps: 300": "qps: 200",
		"weight: 90}": "weight: 80}", "weight: 10}": "weight: 20}", "at: 15s": "at: 16s", "at: 10s": "at: 2s",
	})
	out := filepath.Join(t.TempDir(), "canary")
	_, trials := runAll(t, 5*time.Minute, out, "run", sc, "--out", out)
	if len(trials) != 2 {
		t.Fatalf("%d trials, want 2 (sidecar, proxyless)", len(trials))
	}
	for _, tr := range trials {
		canaryFailed(t, tr)
	}
}

// canaryFailed checks a gameday-canary trial: a fifth of the requests
// failed while the canary did, none before or after its rollback, and
// the verdict is a fail.
func canaryFailed(t *testing.T, tr *results.Trial) {
	t.Helper()
	if len(tr.Faults) != 1 || tr.Faults[0].Error != "" || !hasEventKind(tr, "policy") {
		t.Fatalf("%s: faults %+v, events %+v: want the abort and the rollback", tr.Key(), tr.Faults, tr.Events)
	}
	abort := tr.Faults[0]
	var rollback float64
	for _, e := range tr.Events {
		if e.Kind == "policy" {
			rollback = e.At
		}
	}
	for _, sec := range tr.Series {
		switch {
		case sec.Start >= abort.Start+0.5 && sec.Start+1 <= rollback-0.5 && sec.Requests > 50:
			if f := float64(sec.Errors) / float64(sec.Requests); f < 0.05 || f > 0.5 {
				t.Errorf("%s: second %.0f: %d of %d requests failed with the canary at 20%% failing", tr.Key(), sec.Start, sec.Errors, sec.Requests)
			}
		case sec.Start >= rollback+1 && sec.Errors > 0:
			t.Errorf("%s: second %.0f: %d requests failed after the rollback at %.1fs", tr.Key(), sec.Start, sec.Errors, rollback)
		case sec.Start+1 <= abort.Start && sec.Errors > 0:
			t.Errorf("%s: second %.0f: %d requests failed before the canary did", tr.Key(), sec.Start, sec.Errors)
		}
	}
	if tr.Verdict == nil || tr.Verdict.Pass {
		t.Errorf("%s: verdict %+v: want a fail (available, while the canary failed)", tr.Key(), tr.Verdict)
	}
}

func hasEventKind(tr *results.Trial, kind string) bool {
	for _, e := range tr.Events {
		if e.Kind == kind {
			return true
		}
	}
	return false
}

// shortened writes a built-in scenario with each of changes (old text:
// new, each once) made, and returns its path.
func shortened(t *testing.T, name string, changes map[string]string) string {
	t.Helper()
	show := meshbench(t, time.Minute, "scenarios", "show", name)
	if show.code != 0 {
		t.Fatalf("scenarios show %s: %s", name, show.stderr)
	}
	doc := show.stdout
	for old, new := range changes {
		if !strings.Contains(doc, old) {
			t.Fatalf("%s has no %q to change:\n%s", name, old, doc)
		}
		doc = strings.Replace(doc, old, new, 1)
	}
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
