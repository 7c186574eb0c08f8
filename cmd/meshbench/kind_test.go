package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	chaosv1alpha1 "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"

	"github.com/meshbench/meshbench/runner"
	"github.com/meshbench/meshbench/runner/kind"
	"github.com/meshbench/meshbench/runner/kind/podproc"
	"github.com/meshbench/meshbench/runner/results"
)

// kindStateDir is where the kind platform keeps its runs' state files
// (as root).
const kindStateDir = "/run/meshbench/kind"

// kindLeftovers lists what a kind run left behind, by kind: its state
// file, its namespace (when the cluster is there), its control directory
// in its results directory, host routes into the cluster's pod range.
func kindLeftovers(t *testing.T, cluster, id, out string) map[string]string {
	t.Helper()
	left := map[string]string{}
	if _, err := os.Stat(filepath.Join(kindStateDir, id+".json")); err == nil {
		left["state file"] = filepath.Join(kindStateDir, id+".json")
	}
	if ns, err := kubectlIn(t, cluster, "get", "namespaces", "-l", "meshbench.dev/run="+id, "-o", "name"); err == nil && strings.TrimSpace(ns) != "" {
		left["namespace"] = strings.TrimSpace(ns)
	}
	if _, err := os.Stat(filepath.Join(out, ".meshbench-"+id)); err == nil {
		left["control directory"] = filepath.Join(out, ".meshbench-"+id)
	}
	if routes, _ := exec.Command("ip", "-4", "route", "show", "root", kind.PodSubnet(cluster)).Output(); len(strings.TrimSpace(string(routes))) > 0 {
		left["routes"] = strings.TrimSpace(string(routes))
	}
	return left
}

// kindRoot skips a test of runs on kind when not root, saying why: the
// platform routes this host to the pods.
func kindRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("runs on the kind platform need root (host routes to the pods, /run/meshbench/kind)")
	}
}

// meshbenchEnv runs meshbench with a changed environment.
func meshbenchEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return runArgv(t, 10*time.Minute, env, append([]string{meshbenchBin}, args...))
}

// runArgv runs a command to completion (bounded by timeout) with env
// added to this process's environment.
func runArgv(t *testing.T, timeout time.Duration, env, argv []string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 10 * time.Second // a child left holding the output
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// The smoke scenario on the kind platform, end to end: a cluster created
// for the run, the baseline, the own sidecar and per-node modes as pods,
// figures from the kubelets, the kind environment in the SMPS documents,
// and nothing left afterwards. Bad input first: exit 2, nothing created.
func TestIntegrationKindRun(t *testing.T) {
	engine(t)
	kindRoot(t)
	before := meshbench(t, time.Minute, "cluster", "list").stdout
	stateFiles := func() string {
		m, _ := filepath.Glob(filepath.Join(kindStateDir, "*.json"))
		return strings.Join(m, " ")
	}
	states := stateFiles()
	out := filepath.Join(t.TempDir(), "results")
	stress := faultScenario(t, "4s", []string{"baseline"}, fault("1s", "StressChaos", "hot", "      stressors: {cpu: {workers: 1}}\n      duration: 1s\n"))
	for _, c := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"run", "smoke", "--platform", "kind", "--cluster", "nosuch", "--out", out}, "no meshbench cluster meshbench-nosuch"},
		{nil, []string{"run", "smoke", "--platform", "kind", "--cluster", "Bad_Name", "--out", out}, "--cluster: cluster name"},
		{nil, []string{"run", "smoke", "--platform", "kind", "--network", "netns", "--out", out}, "--network applies to the local platform only"},
		{nil, []string{"run", "smoke", "--platform", "kind", "--cluster", "x", "--keep-cluster", "--out", out}, "--keep-cluster applies to the cluster a run creates"},
		{nil, []string{"run", "smoke", "--platform", "kind", "--cluster", "x", "--node-image", "offline", "--out", out}, "--node-image applies to the cluster a run creates"},
		{[]string{"KUBECONFIG=/nonexistent/config"}, []string{"run", "smoke", "--platform", "kube", "--out", out}, "--kubeconfig: no kubeconfig context in $KUBECONFIG"},
		{nil, []string{"run", "smoke", "--platform", "kube", "--cluster", "x", "--out", out}, "--cluster applies to the kind platform only"},
		{nil, []string{"run", "smoke", "--kubeconfig", "x", "--out", out}, "--kubeconfig applies to the kube platform only"},
		{nil, []string{"run", "smoke", "--cache-dir", "x", "--out", out}, "--cache-dir applies to the kind and kube platforms only"},
		{nil, []string{"run", "smoke", "--platform", "mars", "--out", out}, `unknown platform "mars"`},
		{nil, []string{"run", "smoke", "--platform", "kind", "--candidate-binary", meshbenchBin, "--out", out}, "flag --candidate-binary: meshes[2].proxy.binary: " + meshbenchBin + " is a file of this host: another proxy build runs on the local platform only"},
		{nil, []string{"run", "smoke", "--cluster", "x", "--out", out}, "--cluster applies to the kind platform only"},
		{nil, []string{"conformance", "--suite", "smi", "--platform", "kind", "--out", out}, "local platform only"},
		{nil, []string{"conformance", "--out", out}, `required flag(s) "suite" not set`},
		{[]string{"PATH=/nonexistent"}, []string{"run", "smoke", "--platform", "kind", "--out", out}, "the kind platform needs Docker"},
		{nil, []string{"run", stress, "--platform", "kind", "--out", out}, ":16:5: faults[0]: StressChaos: not executed on the kind platform yet (it executes PodChaos pod-kill, container-kill and pod-failure, and NetworkChaos partition"},
	} {
		r := meshbenchEnv(t, c.env, c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v %v: exit %d, want 2 and %q in stderr:\n%s", c.env, c.args, r.code, c.want, r.stderr)
		}
	}
	if after := meshbench(t, time.Minute, "cluster", "list").stdout; after != before {
		t.Errorf("bad input created a cluster: before %q, after %q", before, after)
	}
	if now := stateFiles(); now != states {
		t.Errorf("bad input changed the state files in %s: before %q, after %q", kindStateDir, states, now)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("bad input created the results directory %s", out)
	}

	// The offline node image make test built (auto would take kind's
	// upstream image on a cgroup v2 host, which needs a registry).
	r := meshbench(t, 20*time.Minute, "run", "smoke", "--platform", "kind", "--node-image", "offline", "--out", out)
	if r.code != 0 {
		t.Fatalf("run smoke --platform kind: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	id := runID(t, r.stderr)
	t.Logf("kind run %s:\n%s", id, r.stdout)
	// TestMain builds both beside meshbench, as make build does.
	for _, c := range []string{"meshbench-proxy", "meshbench-pod-process"} {
		if !strings.Contains(r.stderr, "the pods' image holds "+c+" beside meshbench") {
			t.Errorf("the run did not put %s in the pods' image:\n%s", c, r.stderr)
		}
	}
	checkPodTrials(t, out)
	// The sidecar row's pods were made for it: every process of theirs
	// in its own container, the redirect in the init container.
	for _, n := range []string{"client", "server"} {
		re := regexp.MustCompile(`node ` + n + `: pod ` + n + `-made-\d+ deleted: [1-9]\d* process(es)? ran in its containers, its redirect in its init container`)
		if !re.MatchString(r.stderr) {
			t.Errorf("no pod made for node %s's sidecar deployment ran its processes and redirect (want %q):\n%s", n, re, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "never got theirs") {
		t.Errorf("a made pod's container never got its process:\n%s", r.stderr)
	}
	cluster := "meshbench-run-" + id
	checkPodOwners(t, out, map[string]string{"control-plane": "Deployment/control-plane on " + cluster + "-worker",
		"client": "Pod/client on " + cluster + "-worker", "server": "Pod/server on " + cluster + "-worker2"})
	checkClusterIP(t, out, "server")
	m := readManifest(t, out)
	if p := m.Platform; p.Name != "kind" || !strings.HasPrefix(p.Kubernetes, "v1.34.") || len(p.KubeNodes) != 3 || p.Cluster != "meshbench-run-"+id {
		t.Errorf("manifest platform %+v: want kind, Kubernetes v1.34, 3 nodes, cluster meshbench-run-%s", p, id)
	}
	data, err := os.ReadFile(filepath.Join(out, "smp-environment.json"))
	var env struct {
		Labels map[string]string
		Nodes  []struct{ Type string }
	}
	if err == nil {
		err = json.Unmarshal(data, &env)
	}
	if err != nil || env.Labels["meshbench.dev/platform"] != "kind" || !strings.HasPrefix(env.Labels["meshbench.dev/kubernetes-version"], "v1.34.") ||
		len(env.Nodes) != 3 || env.Nodes[2].Type != "kind node meshbench-run-"+id+"-worker2 (sut, kubelet "+env.Labels["meshbench.dev/kubernetes-version"]+")" {
		t.Errorf("SMPS environment lacks the kind environment (%v):\n%s", err, data)
	}
	// The cluster the run created is gone, with everything else.
	if list := meshbench(t, time.Minute, "cluster", "list").stdout; strings.Contains(list, "meshbench-run-"+id) {
		t.Errorf("the run's cluster is still there: %s", list)
	}
	if l := kindLeftovers(t, "meshbench-run-"+id, id, out); len(l) > 0 {
		t.Errorf("run %s left behind: %v", id, l)
	}
}

// checkMadePods checks where a trial's components ran: with sidecars,
// each node's in the one pod made for the deployment (its sidecar a
// container of that pod's template, its redirect that pod's init
// container), the client's load generator there too (behind the
// client's sidecar); else in the nodes' own pods.
func checkMadePods(t *testing.T, tr *results.Trial) {
	t.Helper()
	pods := map[string]string{}
	for _, u := range tr.Components {
		if u.Pod == "" {
			t.Errorf("%s: %s's pod is not recorded: %+v", tr.Key(), u.Name, u)
			continue
		}
		if p, ok := pods[u.Node]; ok && p != u.Pod {
			t.Errorf("%s: node %s's components ran in pods %s and %s", tr.Key(), u.Node, p, u.Pod)
		}
		pods[u.Node] = u.Pod
	}
	for node, pod := range pods {
		made := strings.HasPrefix(pod, node+"-made-")
		if tr.Mode == "sidecar" && (node == "client" || node == "server") && !made {
			t.Errorf("%s: node %s's components ran in pod %s, want one made for the deployment (%s-made-N)", tr.Key(), node, pod, node)
		}
		if tr.Mode == "baseline" && pod != node {
			t.Errorf("%s: node %s's components ran in pod %s, want the node's own", tr.Key(), node, pod)
		}
	}
}

// checkPodTrials checks a smoke run on pods: every row measured without
// errors, the proxies' figures from the kubelets, the proxies run as
// meshbench-proxy, and the requests crossed them.
func checkPodTrials(t *testing.T, out string) {
	t.Helper()
	trials, err := results.ReadTrials(out)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]*results.Trial{}
	for _, tr := range trials {
		keys[tr.Key()] = tr
		if tr.Requests == 0 || tr.Errors != 0 {
			t.Errorf("%s: %d requests, %d errors", tr.Key(), tr.Requests, tr.Errors)
		}
	}
	for _, k := range []string{"none/baseline", "meshbench/sidecar", "meshbench/per-node"} {
		tr := keys[k]
		if tr == nil {
			t.Errorf("no %s trial; have %v", k, keys)
			continue
		}
		var proxies int
		for _, u := range tr.Components {
			if u.Class != results.ClassProxy {
				continue
			}
			proxies++
			if u.Source != "kubelet summary API" || u.CPUMillicores <= 0 || u.WorkingSetMaxMB <= 0 {
				t.Errorf("%s: proxy %s's figures %+v, want CPU and memory from the kubelet", k, u.Name, u)
			}
			// The proxy-only build ran it, from the pods' image (the
			// process names its executable at start).
			data, err := os.ReadFile(filepath.Join(out, tr.Dir(), results.LogsDir, u.Name+".stderr.log"))
			if err != nil || !strings.Contains(string(data), "runtime: meshbench-proxy, ") {
				t.Errorf("%s: proxy %s did not run as meshbench-proxy (%v):\n%s", k, u.Name, err, data)
			}
		}
		checkMadePods(t, tr)
		if k == "none/baseline" {
			continue
		}
		// The requests crossed the proxies: the server's proxy counted
		// them (its metrics, read while it ran).
		if proxies != 2 || len(tr.Services) != 1 || tr.Services[0].Mesh == nil || tr.Services[0].Mesh.Success < tr.Requests {
			t.Errorf("%s: %d proxies, services %+v: want 2 proxies and the server's proxy counting at least the %d measured requests", k, proxies, tr.Services, tr.Requests)
		}
	}
}

// The wrapper every kind container runs, as real processes on this host:
// output to the control files, the exit reported, SIGTERM and SIGKILL
// passed on when asked for, and a process given up on never started.
func TestIntegrationPodProcess(t *testing.T) {
	integration(t)
	// Both wrappers: meshbench's subcommand, and the binary of the
	// wrapper alone that make build puts beside it (the pods' image holds
	// it then).
	for _, wrapper := range [][]string{
		{meshbenchBin, "pod-process"},
		{filepath.Join(filepath.Dir(meshbenchBin), "meshbench-pod-process")},
	} {
		t.Run(filepath.Base(wrapper[0]), func(t *testing.T) { testPodProcess(t, wrapper) })
	}
}

func testPodProcess(t *testing.T, wrapper []string) {
	dir := t.TempDir()
	run := func(args ...string) result {
		t.Helper()
		return runArgv(t, time.Minute, nil, append(slices.Clone(wrapper), args...))
	}
	start := func(args ...string) *exec.Cmd {
		return exec.Command(wrapper[0], append(wrapper[1:], args...)...)
	}
	report := func(name string) podproc.ExitReport {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(dir, name+podproc.CtlExit))
		var r podproc.ExitReport
		if err == nil {
			err = json.Unmarshal(data, &r)
		}
		if err != nil {
			t.Fatalf("%s's exit report: %v", name, err)
		}
		return r
	}
	r := run("--control", dir, "--name", "ends", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
	if r.code != 3 || r.stdout != "out\n" {
		t.Errorf("exit %d, container log %q: want 3 and the stdout", r.code, r.stdout)
	}
	if out, _ := os.ReadFile(filepath.Join(dir, "ends"+podproc.CtlStdout)); string(out) != "out\n" {
		t.Errorf("stdout file %q", out)
	}
	if errOut, _ := os.ReadFile(filepath.Join(dir, "ends"+podproc.CtlStderr)); string(errOut) != "err\n" {
		t.Errorf("stderr file %q", errOut)
	}
	if rep := report("ends"); rep.Code != 3 || rep.Err() == nil || rep.Err().Error() != "exit status 3" {
		t.Errorf("report %+v", rep)
	}

	// Asked to stop: SIGTERM, then (a process that ignores it) SIGKILL.
	for _, c := range []struct{ name, script, ask, signal string }{
		{"termed", "echo ready; exec sleep 60", podproc.CtlTerm, "terminated"},
		{"killed", "trap '' TERM; echo ready; while :; do sleep 0.1; done", podproc.CtlKill, "killed"},
	} {
		cmd := start("--control", dir, "--name", c.name, "--", "sh", "-c", c.script)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, c.name+" to start", func() bool { return fileContains(filepath.Join(dir, c.name+podproc.CtlStdout), "ready") })
		if c.ask == podproc.CtlKill {
			// SIGTERM first, which this one ignores: it is still there
			// after the wrapper has seen the request (it looks every
			// 100 ms) several times over.
			_ = os.WriteFile(filepath.Join(dir, c.name+podproc.CtlTerm), nil, 0o644)
			time.Sleep(time.Second)
			if _, err := os.Stat(filepath.Join(dir, c.name+podproc.CtlExit)); err == nil {
				t.Fatalf("%s ended on SIGTERM, which it ignores", c.name)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, c.name+c.ask), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		waitExit(t, cmd, c.name+": the wrapper to end after "+c.ask)
		if rep := report(c.name); rep.Signal != c.signal || rep.Err().Error() != "signal: "+c.signal {
			t.Errorf("%s: report %+v, want signal %s", c.name, rep, c.signal)
		}
	}

	// The whole process group is signalled: a child the process left
	// behind goes too (as nginx's workers must).
	cmd := start("--control", dir, "--name", "group", "--", "sh", "-c", "sleep 60 & echo ready $!; wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdoutFile := filepath.Join(dir, "group"+podproc.CtlStdout)
	waitFor(t, 30*time.Second, "group to start", func() bool { return fileContains(stdoutFile, "ready") })
	_ = os.WriteFile(filepath.Join(dir, "group"+podproc.CtlTerm), nil, 0o644)
	waitExit(t, cmd, "group: the wrapper to end after SIGTERM")
	out, _ := os.ReadFile(stdoutFile)
	var child int
	if _, err := fmt.Sscanf(string(out), "ready %d", &child); err != nil {
		t.Fatalf("group's output %q: %v", out, err)
	}
	waitFor(t, 10*time.Second, "the left-behind child to be gone", func() bool {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		return err != nil || strings.Contains(string(stat), ") Z ")
	})

	// A pod's holder keeps running until the kubelet's SIGTERM, then
	// exits 0.
	hold := start("--hold")
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	if err := holdsUntilTerm(t, hold, "--hold"); err != nil {
		t.Errorf("--hold at SIGTERM: %v, want exit 0", err)
	}

	// SIGTERM to the wrapper itself (the kubelet stopping the container)
	// reaches the process, whose exit is reported.
	cmd = start("--control", dir, "--name", "kubelet", "--", "sh", "-c", "echo ready; exec sleep 60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "kubelet to start", func() bool { return fileContains(filepath.Join(dir, "kubelet"+podproc.CtlStdout), "ready") })
	_ = cmd.Process.Signal(syscall.SIGTERM)
	waitExit(t, cmd, "kubelet: the wrapper to end after its own SIGTERM")
	if rep := report("kubelet"); rep.Signal != "terminated" {
		t.Errorf("kubelet: report %+v, want signal terminated", rep)
	}

	// Two SIGTERMs to the wrapper, whose process ignores them: both are
	// passed on, and the process's own exit is still reported (the
	// wrapper does not give up at a second signal, as meshbench's
	// interrupt handling would).
	cmd = start("--control", dir, "--name", "stubborn", "--", "sh", "-c", `trap "" TERM; echo ready; sleep 2; exit 3`)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "stubborn to start", func() bool { return fileContains(filepath.Join(dir, "stubborn"+podproc.CtlStdout), "ready") })
	_ = cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(100 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	waitExit(t, cmd, "stubborn: the wrapper to end with its process")
	if rep := report("stubborn"); rep.Code != 3 || rep.Signal != "" {
		t.Errorf("stubborn: report %+v, want exit code 3", rep)
	}

	testPodProcessFaults(t, dir, start, report)
	testPodProcessAwait(t, dir, start, report)

	// Given up on before it started: it never runs.
	marker := filepath.Join(dir, "ran")
	_ = os.WriteFile(filepath.Join(dir, "late"+podproc.CtlKill), nil, 0o644)
	r = run("--control", dir, "--name", "late", "--", "touch", marker)
	if _, err := os.Stat(marker); err == nil || r.code == 0 {
		t.Errorf("a process given up on ran (exit %d)", r.code)
	}
	if rep := report("late"); rep.Signal != "terminated" {
		t.Errorf("late: report %+v", rep)
	}
}

// testPodProcessAwait checks the wrapper of a container of a pod made for
// a deployment: it runs nothing until its command line is written, then
// runs it as the other wrappers do; with --idle it stays after the
// process's end until SIGTERM, and started again (the kubelet restarting
// a sidecar container) it does not run the process again; given up on
// before its command line came (asked, or by SIGTERM), or given a
// garbled one, it reports the end and runs nothing.
func testPodProcessAwait(t *testing.T, dir string, start func(...string) *exec.Cmd, report func(string) podproc.ExitReport) {
	t.Helper()
	marker := filepath.Join(dir, "awaited")
	script := "echo ran >> " + marker + "; echo out; exit 4"
	cmd := start("--control", dir, "--name", "await", "--await")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // several of its looks (every 100 ms)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("--await ran something before its command line was written")
	}
	if err := podproc.WriteArgv(filepath.Join(dir, "await"), []string{"sh", "-c", script}); err != nil {
		t.Fatal(err)
	}
	waitExit(t, cmd, "await: the wrapper to end with its process")
	if code := cmd.ProcessState.ExitCode(); code != 4 {
		t.Errorf("--await exited %d, want its process's 4", code)
	}
	if rep := report("await"); rep.Code != 4 {
		t.Errorf("await: report %+v, want exit code 4", rep)
	}
	if out, _ := os.ReadFile(filepath.Join(dir, "await"+podproc.CtlStdout)); string(out) != "out\n" {
		t.Errorf("await: stdout file %q", out)
	}

	// --idle: the sidecar's wrapper outlives its process.
	base := filepath.Join(dir, "idle")
	if err := podproc.WriteArgv(base, []string{"sh", "-c", script}); err != nil {
		t.Fatal(err)
	}
	for i, what := range []string{"first start", "restart by the kubelet"} {
		cmd := start("--control", dir, "--name", "idle", "--await", "--idle")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "idle's exit report", func() bool { _, err := os.Stat(base + podproc.CtlExit); return err == nil })
		_ = holdsUntilTerm(t, cmd, "--idle, "+what)
		if data, _ := os.ReadFile(marker); strings.Count(string(data), "ran") != 2 {
			t.Errorf("--idle, after its %s (start %d): the processes ran %d times in all, want 2 (--await's, then --idle's once)", what, i+1, strings.Count(string(data), "ran"))
		}
	}

	// --idle alone, or --await with a command, is bad input.
	for _, args := range [][]string{{"--idle", "--", "true"}, {"--await", "--", "true"}} {
		c := start(append([]string{"--control", dir, "--name", "bad"}, args...)...)
		if out, err := c.CombinedOutput(); c.ProcessState == nil || c.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), "--await") {
			t.Errorf("%v: %v, %q: want exit 2 saying what it wants", args, err, out)
		}
	}

	// Given up on before its command line came.
	cmd = start("--control", dir, "--name", "abandoned", "--await", "--idle")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := os.WriteFile(filepath.Join(dir, "abandoned"+podproc.CtlKill), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "abandoned's exit report", func() bool {
		_, err := os.Stat(filepath.Join(dir, "abandoned"+podproc.CtlExit))
		return err == nil
	})
	// (--idle: it stays, or the kubelet would start it again.)
	_ = holdsUntilTerm(t, cmd, "abandoned, --idle")
	if rep := report("abandoned"); rep.Signal != "terminated" {
		t.Errorf("abandoned: report %+v, want signal terminated", rep)
	}
	if _, err := os.Stat(filepath.Join(dir, "abandoned"+podproc.CtlStdout)); err == nil {
		t.Error("abandoned: a process was started")
	}

	// SIGTERM while it waits (its pod deleted): the end is reported.
	cmd = start("--control", dir, "--name", "waiting", "--await")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	waitExit(t, cmd, "waiting: the wrapper to end at SIGTERM")
	if rep := report("waiting"); rep.Signal != "terminated" {
		t.Errorf("waiting: report %+v, want signal terminated", rep)
	}

	// A command line that is not one: reported, nothing run.
	if err := os.WriteFile(filepath.Join(dir, "garbled"+podproc.CtlArgv), []byte(`"sh -c true"`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd = start("--control", dir, "--name", "garbled", "--await")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitExit(t, cmd, "garbled: the wrapper to end")
	if rep := report("garbled"); rep.Code != 2 || !strings.Contains(rep.Error, "want a JSON array") {
		t.Errorf("garbled: report %+v, want code 2 saying what it wants", rep)
	}
}

// holdsUntilTerm checks that a started wrapper is still there a second
// on (several of its looks, every 100 ms), then that it ends at SIGTERM,
// and returns its exit.
func holdsUntilTerm(t *testing.T, cmd *exec.Cmd, what string) error {
	t.Helper()
	held := make(chan error, 1)
	go func() { held <- cmd.Wait() }()
	select {
	case err := <-held:
		t.Fatalf("%s: the wrapper ended before SIGTERM (%v)", what, err)
	case <-time.After(time.Second):
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-held:
		return err
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("%s: the wrapper did not end at SIGTERM", what)
	}
	return nil
}

// testPodProcessFaults checks what the wrapper does for the kind
// platform's pod faults: stopping the process while the pause file exists
// (pod-failure); killing it and starting it again in the same container
// when asked (container-kill, pod-kill), with SIGTERM first when given a
// grace and the back-off it is given; a kill without grace during a
// grace kills at once; a request during the back-off is dropped, and a
// replacement cuts it short; and no process is started while its pod is
// failed.
func testPodProcessFaults(t *testing.T, dir string, start func(...string) *exec.Cmd, report func(string) podproc.ExitReport) {
	t.Helper()
	base := filepath.Join(dir, "chaos")
	// With the stay file, the process outlives SIGTERM (a grace's end is
	// then up to SIGKILL). Its sleeps are waited for, not run in the
	// foreground: dash starts a foreground command with vfork, and a
	// shell stopped before its child's exec shows state D, not T.
	stay := filepath.Join(dir, "stay")
	cmd := start("--control", dir, "--name", "chaos", "--", "sh", "-c", `trap 'echo bye; [ -e `+stay+` ] || exit 0' TERM; echo start $$; while :; do sleep 0.1 & wait $!; done`)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A test that stops early ends the wrapper before its directory goes
	// (the wrapper looks at it every 100 ms; without it, it would run on).
	defer func() {
		if cmd.ProcessState == nil {
			_ = os.WriteFile(base+podproc.CtlKill, nil, 0o644)
			waitExit(t, cmd, "chaos: the wrapper to end when killed")
		}
	}()
	// starts are the pids the incarnations printed, in order.
	starts := func() []int {
		data, _ := os.ReadFile(base + podproc.CtlStdout)
		var pids []int
		for _, l := range strings.Split(string(data), "\n") {
			var pid int
			if _, err := fmt.Sscanf(l, "start %d", &pid); err == nil {
				pids = append(pids, pid)
			}
		}
		return pids
	}
	state := func(pid int) string {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return "gone"
		}
		_, after, _ := strings.Cut(string(data), ") ")
		return after[:1]
	}
	// children are the wrapper's child processes.
	children := func() []int {
		var pids []int
		stats, _ := filepath.Glob("/proc/[0-9]*/stat")
		for _, f := range stats {
			data, err := os.ReadFile(f)
			_, after, ok := strings.Cut(string(data), ") ")
			var st string
			var pid, ppid int
			if err != nil || !ok {
				continue
			}
			if _, err := fmt.Sscanf(after, "%s %d", &st, &ppid); err == nil && ppid == cmd.Process.Pid {
				_, _ = fmt.Sscanf(filepath.Base(filepath.Dir(f)), "%d", &pid)
				pids = append(pids, pid)
			}
		}
		return pids
	}
	said := func(what string) int {
		data, _ := os.ReadFile(base + podproc.CtlStderr)
		return strings.Count(string(data), what)
	}
	incarnation := func(n int) int {
		t.Helper()
		waitFor(t, 30*time.Second, fmt.Sprintf("incarnation %d to start", n), func() bool { return len(starts()) >= n })
		if got := starts(); len(got) != n {
			t.Fatalf("incarnations %v, want %d", got, n)
		}
		return starts()[n-1]
	}
	restart := func(r podproc.Restart) {
		t.Helper()
		if err := podproc.AskRestart(base, r); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the restart request to be taken", func() bool {
			_, err := os.Stat(base + podproc.CtlRestart)
			return err != nil
		})
	}
	const killed = "pod-process: killed to be restarted"
	first := incarnation(1)

	// Stopped while the pause file exists, running again once it is gone.
	_ = os.WriteFile(base+podproc.CtlPause, nil, 0o644)
	waitFor(t, 30*time.Second, "the process to be stopped", func() bool { return state(first) == "T" })
	_ = os.Remove(base + podproc.CtlPause)
	waitFor(t, 30*time.Second, "the process to run again", func() bool { return state(first) != "T" })

	// Killed and started again (the back-off's first step: at once).
	restart(podproc.Restart{Backoff: []time.Duration{0, time.Hour}})
	second := incarnation(2)
	if second == first || state(first) != "gone" {
		t.Errorf("restart: first pid %d (%s), second %d", first, state(first), second)
	}
	if data, _ := os.ReadFile(base + podproc.CtlStdout); strings.Contains(string(data), "bye") {
		t.Errorf("a restart without grace sent SIGTERM: %q", data)
	}

	// With a grace, SIGTERM first: the handler runs, and the process,
	// which outlives it, is still there. A kill without grace asked for
	// during the grace kills it at once (the wait below is half the
	// grace), and the replacement starts after its delay (none).
	_ = os.WriteFile(stay, nil, 0o644)
	restart(podproc.Restart{Grace: time.Minute, Replace: true})
	waitFor(t, 20*time.Second, "the SIGTERM handler", func() bool { return fileContains(base+podproc.CtlStdout, "bye") })
	if state(second) == "gone" {
		t.Fatalf("the second incarnation ended at SIGTERM, with the stay file")
	}
	restart(podproc.Restart{})
	if third := incarnation(3); state(second) != "gone" || third == second {
		t.Errorf("after a kill during the grace: second %d (%s), third %d", second, state(second), third)
	}
	_ = os.Remove(stay)

	// The back-off counts restarts (from 0 again after the replacement
	// above): the first of these at once, the second after an hour,
	// during which a restart finds nothing to kill and is dropped; a
	// replacement sets the wait to its own delay.
	hour := podproc.Restart{Backoff: []time.Duration{0, time.Hour}}
	restart(hour)
	fourth := incarnation(4)
	restart(hour)
	waitFor(t, 30*time.Second, "the fourth to be killed for an hour", func() bool {
		return state(fourth) == "gone" && said(killed) == 4 && said("starting it again in 1h0m0s") == 1
	})
	restart(podproc.Restart{})
	waitFor(t, 30*time.Second, "the request to be dropped", func() bool { return said("dropped") == 1 })
	if n := len(starts()); n != 4 {
		t.Errorf("incarnations %v after a restart dropped during the back-off, want 4", starts())
	}
	restart(podproc.Restart{Replace: true, Delay: 200 * time.Millisecond})
	fifth := incarnation(5)

	// A process of a failed pod is not started until the failure ends.
	_ = os.WriteFile(base+podproc.CtlPause, nil, 0o644)
	for deadline := time.Now().Add(30 * time.Second); state(fifth) != "T"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(base + podproc.CtlStderr)
			t.Fatalf("the fifth (%d) not stopped within 30s: state %s, the wrapper's children %v, its stderr:\n%s", fifth, state(fifth), children(), data)
		}
	}
	restart(podproc.Restart{})
	waitFor(t, 30*time.Second, "the fifth to be killed", func() bool { return state(fifth) == "gone" && said(killed) == 5 })
	for range 5 {
		if c := children(); len(c) != 0 {
			t.Fatalf("the wrapper started %v while its pod is failed", c)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = os.Remove(base + podproc.CtlPause)
	incarnation(6)

	// Ended when asked: the last incarnation's exit is the report.
	_ = os.WriteFile(base+podproc.CtlTerm, nil, 0o644)
	waitExit(t, cmd, "chaos: the wrapper to end after SIGTERM")
	if rep := report("chaos"); rep.Code != 0 || rep.Signal != "" {
		t.Errorf("chaos: report %+v, want the handler's exit 0", rep)
	}
	for what, want := range map[string]int{killed: 5, "merged": 1, "dropped": 1, "its pod replaced": 1} {
		if n := said(what); n != want {
			data, _ := os.ReadFile(base + podproc.CtlStderr)
			t.Errorf("stderr file says %q %d times, want %d:\n%s", what, n, want, data)
		}
	}
}

// waitExit waits (a minute at most) for a started command to exit.
func waitExit(t *testing.T, cmd *exec.Cmd, what string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("timed out waiting for %s", what)
	}
}

// The kind platform's fault agent, as a real process in a network
// namespace of this host: it applies the partition rules the platform
// writes (the local platform's rules, as one iptables-restore
// transaction), in order; says why it cannot apply a file; removes them
// again when asked; and at its end removes what is still in force with
// its comment, and nothing else.
func TestIntegrationFaultAgent(t *testing.T) {
	integration(t)
	if os.Geteuid() != 0 {
		t.Skip("the fault agent's test needs a network namespace and iptables, which need root")
	}
	ns := fmt.Sprintf("mbtest-agent-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	rulesNow := func() string {
		out, err := exec.Command("ip", "netns", "exec", ns, "iptables", "-S").CombinedOutput()
		if err != nil {
			t.Fatalf("iptables -S: %v: %s", err, out)
		}
		return string(out)
	}
	// A rule of someone else's, which the agent must leave alone.
	if out, err := exec.Command("ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-s", "192.0.2.99", "-m", "comment", "--comment", "other", "-j", "DROP").CombinedOutput(); err != nil {
		t.Fatalf("iptables -A: %v: %s", err, out)
	}
	dir := t.TempDir()
	const run = "meshbench-fault:agenttest/"
	const comment = run + "2"
	// A rule an earlier agent of the run, killed before its end, left in
	// force: this one removes it as it starts (8 rules with the run's
	// prefix after the insert below, not 9).
	if out, err := exec.Command("ip", "netns", "exec", ns, "iptables", "-A", "OUTPUT", "-d", "192.0.2.98", "-m", "comment", "--comment", run+"1", "-j", "DROP").CombinedOutput(); err != nil {
		t.Fatalf("iptables -A: %v: %s", err, out)
	}
	// An interface eth0 (a pod's) with a bandwidth limit an earlier agent
	// left: this one removes it as it starts.
	inNS := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
		return string(out)
	}
	inNS("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
	inNS("ip", "link", "set", "eth0", "up")
	inNS("tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "1mbit", "burst", "2000", "limit", "20000")
	agent := exec.Command("ip", "netns", "exec", ns, meshbenchBin, "fault-agent", "--dir", dir, "--comment", comment, "--clean-prefix", run)
	var out strings.Builder
	agent.Stdout, agent.Stderr = &out, &out
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = agent.Process.Kill() }()
	ask := func(seq int, ext string, input []byte) (answer, errText string) {
		t.Helper()
		base := filepath.Join(dir, fmt.Sprintf("%06d", seq))
		if err := os.WriteFile(base+".tmp", input, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(base+".tmp", base+ext); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the agent's answer to "+base, func() bool {
			_, e1 := os.Stat(base + ".done")
			_, e2 := os.Stat(base + ".err")
			return e1 == nil || e2 == nil
		})
		done, _ := os.ReadFile(base + ".done")
		data, _ := os.ReadFile(base + ".err")
		return string(done), string(data)
	}
	apply := func(seq int, input []byte) (errText string) {
		t.Helper()
		_, e := ask(seq, kind.AgentRules, input)
		return e
	}
	// A rejecting partition both ways from two peers: two targets, in
	// order, per chain and peer.
	rules := runner.FilterRules(chaosv1alpha1.Both, "eth0", []string{"10.9.0.1", "10.9.0.2"}, comment, runner.PartitionTargets(chaosv1alpha1.RejectPartitionBehavior))
	if e := apply(1, kind.RestoreInput("-I", rules)); e != "" {
		t.Fatalf("insert: %s", e)
	}
	// Per chain, in order: each target first at the last peer's (each
	// rule went in at the head), the TCP reset before the rest.
	got := rulesNow()
	for _, chain := range []string{"OUTPUT", "INPUT"} {
		var lines []string
		for _, l := range strings.Split(got, "\n") {
			if strings.HasPrefix(l, "-A "+chain+" ") && strings.Contains(l, comment) {
				lines = append(lines, l)
			}
		}
		want := [][2]string{{"10.9.0.2/32", "--reject-with tcp-reset"}, {"10.9.0.2/32", "! -p tcp"}, {"10.9.0.1/32", "--reject-with tcp-reset"}, {"10.9.0.1/32", "! -p tcp"}}
		ok := len(lines) == len(want)
		for i := 0; ok && i < len(want); i++ {
			ok = strings.Contains(lines[i], want[i][0]) && strings.Contains(lines[i], want[i][1]) && strings.Contains(lines[i], " eth0 ")
		}
		if !ok {
			t.Errorf("%s after the insert, want %v in order:\n%s", chain, want, got)
		}
	}
	if n := strings.Count(got, run); n != 8 || strings.Contains(got, "192.0.2.98") {
		t.Errorf("%d rules with the comment, want 8 and not the leftover's:\n%s", n, got)
	}
	// A file iptables refuses: all or nothing, and the agent says why.
	if e := apply(2, []byte("*filter\n-I NOSUCHCHAIN 1 -j DROP\nCOMMIT\n")); !strings.Contains(e, "iptables-restore") {
		t.Errorf("a bad file: error %q, want iptables-restore's", e)
	}
	if e := apply(3, kind.RestoreInput("-D", rules)); e != "" {
		t.Fatalf("delete: %s", e)
	}
	if got := rulesNow(); strings.Contains(got, comment) || !strings.Contains(got, "--comment other") {
		t.Errorf("after the delete:\n%s", got)
	}
	// A loss of half the packets leaving on lo, with a rule ahead of it
	// counting them (as the platform's loss and corrupt put them in
	// force): the agent counts what each did. 400 datagrams to a closed
	// port leave through OUTPUT (with any ICMP errors the kernel sends
	// back); the dropped share of a fair draw over 400 or more lies
	// within 15 points of half (6 standard deviations).
	if out, err := exec.Command("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
	drop, seen := runner.SampledComments(comment + ":5")
	loss := runner.SampledRules(chaosv1alpha1.To, "lo", []string{""}, comment+":5", 50)
	if e := apply(4, kind.RestoreInput("-I", loss)); e != "" {
		t.Fatalf("insert the loss: %s", e)
	}
	// The counting rule ahead of the dropping one, as the platforms
	// insert them: it sees every packet.
	if out := inNS("iptables", "-S", "OUTPUT"); !(strings.Index(out, seen) >= 0 && strings.Index(out, seen) < strings.Index(out, drop)) {
		t.Errorf("OUTPUT, want the counting rule %s ahead of the dropping rule %s:\n%s", seen, drop, out)
	}
	send := exec.Command("ip", "netns", "exec", ns, "bash", "-c", "for i in $(seq 400); do echo x > /dev/udp/127.0.0.1/9; done; true")
	if out, err := send.CombinedOutput(); err != nil {
		t.Fatalf("send datagrams: %v: %s", err, out)
	}
	answer, e := ask(5, kind.AgentCount, []byte(drop+"\n"+seen+"\n"))
	counts, err := kind.ParseCounts([]byte(answer), []string{drop, seen})
	if e != "" || err != nil {
		t.Fatalf("count: %s %v (answer %q)", e, err, answer)
	}
	t.Logf("a 50%% loss on lo: %d of %d packets dropped", counts[0], counts[1])
	if counts[1] < 400 || float64(counts[0]) < 0.35*float64(counts[1]) || float64(counts[0]) > 0.65*float64(counts[1]) {
		t.Errorf("a 50%% loss dropped %d of %d packets, want 400 or more seen and 35%% to 65%% of them dropped", counts[0], counts[1])
	}
	if a, e := ask(6, kind.AgentCount, []byte("no-such-comment\n")); e != "" || a != "no-such-comment 0\n" {
		t.Errorf("a count of no rule: %q %s, want 0", a, e)
	}
	// A bandwidth limit, as the platform puts it in force; tc's refusal
	// is said.
	if q := inNS("tc", "qdisc", "show", "dev", "eth0", "root"); strings.Contains(q, "tbf") {
		t.Errorf("the leftover bandwidth limit is still there after the agent started: %s", q)
	}
	// With the agent's own handle, as the platform sends it; removed by
	// handle (another's would be refused), then in force again.
	add := []byte("qdisc add dev eth0 root handle 2a: " + strings.Join(runner.TBFArgs(&chaosv1alpha1.BandwidthSpec{Rate: "10 kbps", Buffer: 2000, Limit: 20000}), " ") + "\n")
	if _, e := ask(7, kind.AgentTC, add); e != "" {
		t.Fatalf("tc: %s", e)
	}
	if q := inNS("tc", "qdisc", "show", "dev", "eth0", "root"); !strings.HasPrefix(q, "qdisc tbf 2a: ") || !strings.Contains(q, "rate 80Kbit") {
		t.Errorf("after the bandwidth limit: %s, want a tbf of 10 kB/s with handle 2a:", q)
	}
	if _, e := ask(8, kind.AgentTC, []byte("qdisc del dev eth0 root handle 2b:\n")); e == "" {
		t.Errorf("removing another handle's root qdisc succeeded")
	}
	if _, e := ask(9, kind.AgentTC, []byte("qdisc del dev eth0 root handle 2a:\n")); e != "" {
		t.Errorf("removing the limit: %s", e)
	}
	if q := inNS("tc", "qdisc", "show", "dev", "eth0", "root"); strings.Contains(q, "tbf") {
		t.Errorf("after the limit's removal: %s", q)
	}
	if _, e := ask(10, kind.AgentTC, add); e != "" {
		t.Fatalf("tc again: %s", e)
	}
	// A limit on eth1 too, then eth0's replaced by another one (a later
	// agent's, handle 3a:): at its end the agent removes eth1's, its
	// own, and leaves eth0's.
	if _, e := ask(11, kind.AgentTC, []byte(strings.Replace(strings.Replace(string(add), "eth0", "eth1", 1), "2a:", "2c:", 1))); e != "" {
		t.Fatalf("tc on eth1: %s", e)
	}
	inNS("tc", "qdisc", "replace", "dev", "eth0", "root", "handle", "3a:", "tbf", "rate", "1mbit", "burst", "2000", "limit", "20000")
	if _, e := ask(12, kind.AgentTC, []byte("qdisc add dev nosuchdev root tbf rate 1kbps burst 1 limit 1\n")); !strings.Contains(e, "tc qdisc add dev nosuchdev") {
		t.Errorf("a tc command tc refuses: error %q, want tc's", e)
	}
	// The partition in force again, beside the loss and the bandwidth
	// limit, then the agent ends (SIGTERM, as the platform stops it): it
	// removes its rules, the loss's among them, and its limit, and
	// leaves the others, a later agent's rules of the run among them.
	if e := apply(13, kind.RestoreInput("-I", rules)); e != "" {
		t.Fatalf("insert again: %s", e)
	}
	if out, err := exec.Command("ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-s", "192.0.2.97", "-m", "comment", "--comment", run+"3", "-j", "DROP").CombinedOutput(); err != nil {
		t.Fatalf("iptables -A: %v: %s", err, out)
	}
	_ = agent.Process.Signal(syscall.SIGTERM)
	waitExit(t, agent, "the fault agent to end at SIGTERM")
	if !agent.ProcessState.Success() {
		t.Errorf("the agent's exit: %v\n%s", agent.ProcessState, out.String())
	}
	if got := rulesNow(); strings.Contains(got, comment) || !strings.Contains(got, "--comment other") || !strings.Contains(got, run+"3") {
		t.Errorf("after the agent's end, want the other rule and the later agent's:\n%s\nits output:\n%s", got, out.String())
	}
	if q := inNS("tc", "qdisc", "show", "dev", "eth1", "root"); strings.Contains(q, "tbf") {
		t.Errorf("after the agent's end, its bandwidth limit of eth1 is still there: %s", q)
	}
	if q := inNS("tc", "qdisc", "show", "dev", "eth0", "root"); !strings.HasPrefix(q, "qdisc tbf 3a: ") {
		t.Errorf("after the agent's end, eth0's root qdisc is %q, want the later agent's (3a:) left alone", q)
	}
	// Bad input: the flag named.
	if r := meshbench(t, time.Minute, "fault-agent", "--dir", dir); r.code != 2 || !strings.Contains(r.stderr, "--comment") {
		t.Errorf("fault-agent without --comment: exit %d: %s", r.code, r.stderr)
	}
}
