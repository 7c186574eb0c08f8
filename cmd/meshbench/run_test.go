package main

import (
	"bufio"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshbench/meshbench/reports"
	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/scenarios"
	"github.com/meshbench/meshbench/smps"
)

func TestIntegrationRunDefaultShortened(t *testing.T) {
	integration(t)
	out := filepath.Join(t.TempDir(), "results")
	r := meshbench(t, 3*time.Minute, "run", "--duration", "2s", "--trials", "1", "--out", out)
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("table:\n%s", r.stdout)
	for _, row := range []string{"baseline", "sidecar", "per-node", "proxyless"} {
		if !strings.Contains(r.stdout, row) {
			t.Errorf("table has no %q row", row)
		}
	}
	m, err := results.ReadManifest(out)
	if err != nil {
		t.Fatal(err)
	}
	if m.Host.Kernel == "" || m.Host.CPUs == 0 || m.Host.MemoryMB == 0 || m.Meshbench.GoVersion == "" ||
		m.Platform.Network == "" || m.HistogramResolution != "0.5% log-spaced buckets" || m.Scenario == nil || m.Scenario.Load.Duration.D() != 2*time.Second {
		t.Errorf("manifest incomplete: %+v", m)
	}
	if len(m.Calibrations) != 1 {
		t.Fatalf("want one harness-floor calibration in the manifest, got %+v", m.Calibrations)
	}
	if c := m.Calibrations[0]; math.Abs(c.Achieved-1000)/1000 > 0.05 || c.Errors != 0 || c.LatencyMs.P50 <= 0 || c.Requested != 1000 {
		t.Errorf("harness-floor calibration: %+v", c)
	}
	if !strings.Contains(r.stdout, "Harness floor") {
		t.Error("the table does not state the harness floor")
	}
	trials, err := results.ReadTrials(out)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, tr := range trials {
		seen[tr.Key()] = true
		checkTrial(t, out, m, tr, 1000)
		if tr.Key() == "meshbench/sidecar" {
			checkIntercepted(t, out, m, tr)
		}
	}
	want := []string{"none/baseline", "meshbench/sidecar", "meshbench/per-node", "meshbench/proxyless"}
	unavailable := map[string]bool{}
	for _, u := range m.Unavailable {
		unavailable[u.Mesh+"/"+u.Mode] = true
	}
	for _, k := range []string{"haproxy/sidecar", "haproxy/per-node", "nginx/sidecar"} {
		if !unavailable[k] {
			want = append(want, k) // installed: it must have run
		}
	}
	for _, k := range want {
		if !seen[k] {
			t.Errorf("no %s trial; got %v", k, seen)
		}
	}
	var rows []*reports.Row
	if err := readJSONFile(filepath.Join(out, results.SummaryJSONFile), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(want) || rows[0].Mode != "baseline" {
		t.Fatalf("summary rows: want %d with the baseline first, got %d", len(want), len(rows))
	}
	for _, r := range rows {
		wantProxies := map[string]int{"baseline": 0, "sidecar": 2, "per-node": 2, "proxyless": 0}[r.Mode]
		if r.Proxies != wantProxies || (wantProxies > 0 && (r.ProxyCPU <= 0 || r.ProxyRSSMB <= 0)) || (r.Mode != "baseline" && !r.HasBaseline) {
			t.Errorf("summary row %s: %+v", r.Key(), r)
		}
	}
}

// checkTrial asserts what every finished trial must satisfy.
func checkTrial(t *testing.T, dir string, m *results.Manifest, tr *results.Trial, qps float64) {
	t.Helper()
	name := tr.Key()
	// fortio makes floor(qps*d/c) calls on each of its c connections.
	// Whether they were made says the load was driven as asked; the
	// achieved rate also counts the last calls' latency and the
	// connections' staggered starts, which a busy machine stretches, so it
	// only has to be in the right range.
	d, err := time.ParseDuration(tr.Duration)
	if err != nil || tr.Connections <= 0 {
		t.Fatalf("%s: duration %q, %d connections", name, tr.Duration, tr.Connections)
	}
	conns := int64(tr.Connections)
	scheduled := int64(qps*d.Seconds()/float64(conns)) * conns
	// A connection whose calls take longer than the schedule's spacing
	// makes fewer of them within the duration: with one core busy, the
	// own per-node row of the fanout made 258 of 296 (87%). Half is what
	// no slowness of a working path explains.
	if tr.Requests < scheduled/2 || tr.Requests > scheduled {
		t.Errorf("%s: %d requests, want the %d fortio schedules at %.0f qps for %s on %d connections (at least half of them)", name, tr.Requests, scheduled, qps, d, conns)
	}
	if tr.Achieved < 0.8*qps || tr.Achieved > 1.01*qps {
		t.Errorf("%s: achieved %.1f qps, want between 80%% and 101%% of %.0f", name, tr.Achieved, qps)
	}
	// The own mesh's proxies and libraries take their configuration from
	// its control plane: every one acknowledged the version in force
	// (variants' too: an L4 per-node row is meshbench-l4).
	if tr.Mesh == "meshbench" || strings.HasPrefix(tr.Mesh, "meshbench-") {
		if cp := tr.ControlPlane; cp == nil || cp.Nodes == 0 || cp.Current != cp.Nodes || len(cp.NACKs) > 0 {
			t.Errorf("%s: control plane %+v, want every proxy current and no NACK", name, cp)
		}
	}
	if tr.Errors != 0 || tr.Requests == 0 {
		t.Errorf("%s: %d errors of %d requests (codes %v)", name, tr.Errors, tr.Requests, tr.Codes)
	}
	// The own proxies' telemetry, read back as SMI Traffic Metrics from
	// the control plane, counts exactly the requests each application
	// served (warm-up included, readiness probes not).
	if tr.Mesh == "meshbench" && (tr.Mode == "sidecar" || tr.Mode == "per-node") && tr.Protocol != "tcp" {
		for _, s := range tr.Services {
			if m := s.Mesh; m == nil || m.Error != "" || m.Success+m.Failure != s.Requests || m.Failure != 0 || m.P99Ms <= 0 {
				t.Errorf("%s: service %s served %d requests; the mesh's traffic metrics say %+v", name, s.Name, s.Requests, m)
			}
		}
	}
	l := tr.LatencyMs
	if !(l.Min > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) {
		t.Errorf("%s: latencies out of order: %+v", name, l)
	}
	// Each request's corrected latency is at least its own, so its p99 is.
	if co := tr.COLatencyMs; co.P99 <= 0 || co.P99 < l.P99-1e-9 || co.Max < l.Max-1e-9 {
		t.Errorf("%s: corrected latency %+v below fortio's %+v", name, co, l)
	}
	tdir := filepath.Join(dir, tr.Dir())
	cfg, err := smps.ReadConfig(filepath.Join(tdir, results.SMPConfigFile))
	if err != nil {
		t.Fatalf("%s: SMP config does not parse strictly: %v", name, err)
	}
	res, err := smps.ReadResult(filepath.Join(tdir, results.SMPResultFile))
	if err != nil {
		t.Fatalf("%s: SMP result does not parse strictly: %v", name, err)
	}
	if cfg.GetId() != res.GetTestId() || cfg.GetSmpVersion() != smps.Version || len(cfg.GetClients()) != 1 ||
		cfg.GetClients()[0].GetRps() != int64(qps) || cfg.GetLabels()[smps.LabelRunID] != m.RunID {
		t.Errorf("%s: SMP config inconsistent: %v", name, cfg)
	}
	lat := res.GetLatenciesMs()
	if lat.GetP50() != l.P50 || lat.GetP99() != l.P99 || res.GetActualQps() != tr.Achieved ||
		res.GetStartTime().AsTime().IsZero() || !res.GetEndTime().AsTime().After(res.GetStartTime().AsTime()) {
		t.Errorf("%s: SMP result does not match the trial: %v", name, res)
	}
	mc, err := smps.ReadMeshConfig(filepath.Join(tdir, results.SMPMeshFile))
	if err != nil {
		t.Fatalf("%s: SMP mesh config does not parse strictly: %v", name, err)
	}
	env, err := smps.ReadEnvironment(filepath.Join(dir, results.SMPEnvFile))
	if err != nil {
		t.Fatalf("SMP environment does not parse strictly: %v", err)
	}
	// The environment's nodes: a pod's each, the shared ones, and the
	// control plane's where a row has one (a trial with a control
	// plane needs it).
	nodes := len(m.Scenario.Topology.Workloads()) + len(m.Scenario.Topology.SharedNodes())
	if _, ok := m.Platform.Nodes[scenarios.ControlPlaneNode]; ok {
		nodes++
	} else if tr.ControlPlane != nil {
		t.Errorf("%s: a control plane ran, and the run has no node %q: %v", name, scenarios.ControlPlaneNode, m.Platform.Nodes)
	}
	if res.GetMeshConfigId() != mc.GetId() || res.GetEnvId() != env.GetId() || len(env.GetNodes()) != nodes ||
		len(env.GetIndividualWorkloads()) != len(m.Scenario.Topology.Workloads()) || env.GetNodes()[0].GetCores() == 0 {
		t.Errorf("%s: SMP result not linked to its mesh config and environment (%d nodes expected): %v / %v / %v", name, nodes, res, mc, env)
	}
	proxies := 0
	for _, u := range tr.Components {
		if u.Class == results.ClassProxy {
			proxies++
		}
	}
	if int(mc.GetSidecar().GetCount()) != proxies || (proxies > 0 && mc.GetSidecar().GetCpuMcores() <= 0) || mc.GetMtlsEnabled() != (tr.Mesh != "none") {
		t.Errorf("%s: SMP mesh config %v does not match the trial (%d proxies)", name, mc, proxies)
	}
	if _, err := os.Stat(filepath.Join(tdir, results.FortioFile)); err != nil {
		t.Errorf("%s: no raw fortio result: %v", name, err)
	}
	logs, _ := filepath.Glob(filepath.Join(tdir, results.LogsDir, "*.log"))
	if len(logs) == 0 {
		t.Errorf("%s: no process logs", name)
	}
	checkServices(t, m, tr)
	for _, u := range tr.Components {
		// A control plane is idle while the load runs (no configuration
		// changes): it may well have used no CPU.
		if (u.CPUMillicores <= 0 && u.Class != results.ClassControlPlane) || u.CPUMillicores < 0 || u.RSSMaxMB <= 0 {
			t.Errorf("%s: component %s has no resource figures: %+v", name, u.Name, u)
		}
		// As root on cgroup v1 hosts, components are accounted by cgroup
		// (the load generator reports its own CPU).
		if strings.HasPrefix(m.Platform.ResourceSource, "cgroup") && u.Class != results.ClassLoadGen && (u.Source != "cgroup v1" || u.WorkingSetMaxMB <= 0) {
			t.Errorf("%s: component %s not accounted by its cgroup: %+v", name, u.Name, u)
		}
	}
}

// checkServices asserts that every service of the topology served at least
// the requests the client measured, and made each of its calls for every
// request it served, without a failure: the traffic crossed every hop.
func checkServices(t *testing.T, m *results.Manifest, tr *results.Trial) {
	t.Helper()
	svcs := m.Scenario.Topology.ServiceList()
	if len(tr.Services) != len(svcs) {
		t.Errorf("%s: counts of %d services, want %d: %+v", tr.Key(), len(tr.Services), len(svcs), tr.Services)
		return
	}
	for i, svc := range svcs {
		c := tr.Services[i]
		if c.Name != svc.Name || c.Requests < tr.Requests || c.Calls != c.Requests*int64(len(svc.Calls)) || c.CallErrors != 0 {
			t.Errorf("%s: service %s: %+v, want >= %d requests, %d calls each, no call errors", tr.Key(), svc.Name, c, tr.Requests, len(svc.Calls))
		}
	}
}

// startRun starts `meshbench run` in the background, with its stderr in a
// file so the test can follow it.
func startRun(t *testing.T, args ...string) (*exec.Cmd, string) {
	t.Helper()
	stderr := filepath.Join(t.TempDir(), "stderr")
	f, err := os.Create(stderr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	cmd := exec.Command(meshbenchBin, append([]string{"run"}, args...)...)
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, stderr
}

// waitFor polls until cond is true or fails the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fileContains(path, s string) bool {
	data, err := os.ReadFile(path)
	return err == nil && strings.Contains(string(data), s)
}

// measuring reports whether the sidecar trial's load client has started
// its measured window.
func measuring(out string) func() bool {
	return func() bool {
		return fileContains(filepath.Join(out, results.TrialDir("meshbench", "sidecar", 1), results.LogsDir, "client.stdout.log"), "measure-start")
	}
}

func TestIntegrationKillRecovers(t *testing.T) {
	integration(t)
	out := filepath.Join(t.TempDir(), "killed")
	// 10 s trials: the kill must land inside the sidecar trial's measured
	// window however slowly this test notices that it began.
	cmd, stderr := startRun(t, "default", "--duration", "10s", "--trials", "1", "--out", out)
	waitFor(t, 120*time.Second, "the sidecar trial to be measuring", measuring(out))
	data, _ := os.ReadFile(stderr)
	killed := runID(t, string(data))
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if os.Geteuid() == 0 && len(leftovers(t, killed)) == 0 {
		t.Errorf("SIGKILL left nothing behind: the test did not kill a run mid-trial")
	}
	// The finished baseline trial survived the crash; the trial in progress
	// left no trial.json.
	trials, err := results.ReadTrials(out)
	if err != nil || len(trials) != 1 || trials[0].Key() != "none/baseline" {
		t.Errorf("after SIGKILL want the finished baseline trial only, got %v (err %v)", trials, err)
	}

	next := meshbench(t, 2*time.Minute, "run", "smoke", "--duration", "1s", "--out", filepath.Join(t.TempDir(), "next"))
	if next.code != 0 {
		t.Fatalf("next run failed: exit %d\n%s", next.code, next.stderr)
	}
	if !strings.Contains(next.stderr, "removing leftovers of dead run "+killed) {
		t.Errorf("next run did not report removing run %s's leftovers:\n%s", killed, next.stderr)
	}
	for _, id := range []string{killed, runID(t, next.stderr)} {
		if l := leftovers(t, id); len(l) > 0 {
			t.Errorf("run %s left behind: %v", id, l)
		}
	}
}

func TestIntegrationInterruptTearsDown(t *testing.T) {
	integration(t)
	out := filepath.Join(t.TempDir(), "interrupted")
	cmd, stderr := startRun(t, "default", "--modes", "sidecar", "--duration", "30s", "--trials", "1", "--out", out)
	waitFor(t, 60*time.Second, "the sidecar trial to be measuring", measuring(out))
	data, _ := os.ReadFile(stderr)
	id := runID(t, string(data))
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exit after SIGINT: %v, want exit code 1", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("teardown after SIGINT took %s", d)
	}
	if !fileContains(stderr, "interrupted") {
		data, _ := os.ReadFile(stderr)
		t.Errorf("stderr does not say the run was interrupted:\n%s", data)
	}
	if l := leftovers(t, id); len(l) > 0 {
		t.Errorf("SIGINT left behind: %v", l)
	}
}

// leftovers lists what exists of a run: namespaces, links, iptables rules,
// processes and its state file.
func leftovers(t *testing.T, id string) []string {
	t.Helper()
	var found []string
	if os.Geteuid() == 0 {
		if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, "mb-"+id+"-") {
					found = append(found, "netns "+strings.Fields(line)[0])
				}
			}
		}
		if out, err := exec.Command("ip", "-o", "link", "show").Output(); err == nil {
			for _, line := range strings.Split(string(out), "\n") {
				if f := strings.Fields(line); len(f) > 1 && (strings.HasPrefix(f[1], "mb-"+id) || strings.HasPrefix(f[1], "mb"+id)) {
					found = append(found, "link "+f[1])
				}
			}
		}
		if out, err := exec.Command("iptables", "-w", "5", "-S").Output(); err == nil {
			for _, line := range strings.Split(string(out), "\n") {
				if strings.Contains(line, "meshbench:"+id) {
					found = append(found, "iptables "+line)
				}
			}
		}
		if _, err := os.Stat(filepath.Join("/run/meshbench", id+".json")); err == nil {
			found = append(found, "state file")
		}
		for _, c := range []string{"cpuacct", "memory"} {
			if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", c, "meshbench-"+id)); err == nil {
				found = append(found, "cgroup "+c)
			}
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(string(data), "\x00") {
			if kv == "MESHBENCH_RUN_ID="+id && !zombie(filepath.Dir(p)) {
				found = append(found, "process "+filepath.Base(filepath.Dir(p))+" "+cmdline(filepath.Dir(p)))
			}
		}
	}
	return found
}

func zombie(procDir string) bool {
	f, err := os.Open(filepath.Join(procDir, "status"))
	if err != nil {
		return true
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "State:"); ok {
			return strings.HasPrefix(strings.TrimSpace(rest), "Z")
		}
	}
	return false
}

func cmdline(procDir string) string {
	data, _ := os.ReadFile(filepath.Join(procDir, "cmdline"))
	return strconv.Quote(strings.ReplaceAll(string(data), "\x00", " "))
}

// checkIntercepted asserts that the sidecar trial's traffic went through
// both sidecars: on the namespace platform the client called the server's
// own address and iptables sent it to the sidecars (transparent mode).
func checkIntercepted(t *testing.T, dir string, m *results.Manifest, tr *results.Trial) {
	t.Helper()
	if m.Platform.Transparent && !strings.Contains(tr.Target, m.Platform.Nodes["server"]+":8080") {
		t.Errorf("transparent platform, but the client called %s rather than the server's address", tr.Target)
	}
	for _, side := range []string{"client-sidecar", "server-sidecar"} {
		data, err := os.ReadFile(filepath.Join(dir, tr.Dir(), results.LogsDir, side+".stderr.log"))
		if err != nil {
			t.Fatal(err)
		}
		// The proxy-only build runs the proxies (TestMain puts it
		// beside the meshbench binary, as make build does).
		if !strings.Contains(string(data), "runtime: meshbench-proxy, ") {
			t.Errorf("%s did not run as meshbench-proxy:\n%s", side, data)
		}
		re := regexp.MustCompile(`listener \w+: (\d+) requests \(2xx (\d+)`)
		mm := re.FindStringSubmatch(string(data))
		if mm == nil {
			t.Errorf("%s logged no request counts:\n%s", side, data)
			continue
		}
		if n, _ := strconv.ParseInt(mm[2], 10, 64); n < tr.Requests {
			t.Errorf("%s answered %d requests with 2xx, fewer than the %d the client measured: traffic bypassed it", side, n, tr.Requests)
		}
	}
}

func TestIntegrationSweep(t *testing.T) {
	integration(t)
	out := filepath.Join(t.TempDir(), "sweep")
	// The scenario's 16 connections: with 4, 2000 rps leaves each 2 ms per
	// request through two mTLS sidecars, which a busy core does not keep.
	r := meshbench(t, 3*time.Minute, "run", "sweep", "--modes", "baseline,meshbench/sidecar", "--trials", "1",
		"--duration", "2s", "--out", out)
	if r.code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	m, err := results.ReadManifest(out)
	if err != nil {
		t.Fatal(err)
	}
	trials, err := results.ReadTrials(out)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, tr := range trials {
		seen[tr.RateKey()] = true
		checkTrial(t, out, m, tr, tr.Requested)
	}
	for _, rate := range []string{"100", "500", "1000", "2000"} {
		for _, k := range []string{"none/baseline@", "meshbench/sidecar@"} {
			if !seen[k+rate] {
				t.Errorf("no %s%s trial", k, rate)
			}
		}
	}
	if len(m.Calibrations) != 4 || !strings.Contains(r.stdout, "RATE") {
		t.Errorf("want a calibration per rate and a RATE column; got %d calibrations\n%s", len(m.Calibrations), r.stdout)
	}
}

// TestIntegrationRunProfile takes the sidecars' profiles over a trial
// and reads them back: per proxy a CPU profile and two heap profiles, in
// pprof's format, summarized in the run's table and the report, with the
// proxy's request handler in the flame graph.
func TestIntegrationRunProfile(t *testing.T) {
	integration(t)
	out := filepath.Join(t.TempDir(), "results")
	r := meshbench(t, 3*time.Minute, "run", "smoke", "--profile", "--modes", "baseline,sidecar", "--qps", "500", "--duration", "4s", "--trials", "1", "--out", out)
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "Where the meshbench proxies' CPU went") || !strings.Contains(r.stdout, "allocations per request per proxy") {
		t.Errorf("the run's table has no profile summary:\n%s", r.stdout)
	}
	trials, err := results.ReadTrials(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range trials {
		want := map[string]int{"none/baseline": 0, "meshbench/sidecar": 2}[tr.Key()]
		if len(tr.Profiles) != want {
			t.Errorf("%s: %d profiles, want %d: %+v", tr.Key(), len(tr.Profiles), want, tr.Profiles)
		}
		for _, p := range tr.Profiles {
			if p.Error != "" || p.CPU == "" || p.HeapStart == "" || p.Heap == "" || p.Seconds != 3 {
				t.Errorf("%s: %+v", tr.Key(), p)
			}
		}
	}
	var rep struct{ Profiles []*reports.ProfileSummary }
	jsonOut := filepath.Join(t.TempDir(), "report.json")
	if r := meshbench(t, time.Minute, "report", out, "--format", "json", "--out", jsonOut); r.code != 0 {
		t.Fatalf("report: exit %d: %s", r.code, r.stderr)
	}
	if err := readJSONFile(jsonOut, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Profiles) != 1 {
		t.Fatalf("want the sidecar row's profiles only, got %+v", rep.Profiles)
	}
	s := rep.Profiles[0]
	if s.Key != "meshbench/sidecar@500" || s.Profiles != 2 || s.CPUSeconds <= 0 || s.AllocsPerRequest <= 0 || s.HeapInUseMB <= 0 || len(s.Errors) != 0 {
		t.Errorf("profile summary: %+v", s)
	}
	htmlOut := filepath.Join(t.TempDir(), "report.html")
	if r := meshbench(t, time.Minute, "report", out, "--format", "html", "--out", htmlOut); r.code != 0 {
		t.Fatalf("report: exit %d: %s", r.code, r.stderr)
	}
	page, err := os.ReadFile(htmlOut)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), "proxy.(*listener).ServeHTTP") {
		t.Error("the flame graph does not show the proxy's request handler")
	}
}
