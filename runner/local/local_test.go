package local

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/runner"
	"github.com/meshbench/meshbench/runner/results"
)

// The test binary doubles as the helper process started on nodes: with
// MESHBENCH_TEST_HELPER set it serves or fetches HTTP instead of testing.
func TestMain(m *testing.M) {
	switch os.Getenv("MESHBENCH_TEST_HELPER") {
	case "serve":
		http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello from node") })
		fmt.Println(http.ListenAndServe(os.Args[len(os.Args)-1], nil))
		os.Exit(1)
	case "fetch":
		resp, err := http.Get(os.Args[len(os.Args)-1])
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		b, _ := io.ReadAll(resp.Body)
		fmt.Print(string(b))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helperSpec(node, mode, arg string, out io.Writer) runner.ProcessSpec {
	return runner.ProcessSpec{Name: mode + "-" + node, Class: results.ClassApp, Command: "env",
		Args: []string{"MESHBENCH_TEST_HELPER=" + mode, os.Args[0], "-test.run=^$", arg}, Stdout: out, Stderr: out}
}

// deployOne places a one-process unit on node.
func deployOne(ctx context.Context, p runner.Platform, node string, spec runner.ProcessSpec) (runner.Deployed, runner.Process, error) {
	d, err := p.Deploy(ctx, runner.Unit{Name: spec.Name, ReadyTimeout: 10 * time.Second,
		Pods: []runner.Pod{{Node: node, Processes: []runner.ProcessSpec{spec}}}})
	if err != nil {
		return nil, nil, err
	}
	return d, d.Processes()[0], nil
}

func testPlatform(t *testing.T, network string) {
	ctx := context.Background()
	id := newTestRunID(t)
	p, err := New(ctx, Options{RunID: id, Network: network, Self: os.Args[0]})
	if err != nil {
		t.Fatal(err)
	}
	if d := p.Describe(); d.Network != network || d.NetworkReason == "" {
		t.Errorf("Describe() = %+v", d)
	}
	nodes, err := p.Up(ctx, []string{"alpha", "beta"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Down(ctx)
	a, b := nodes["alpha"], nodes["beta"]
	if a.Addr == b.Addr || !a.Addr.IsValid() {
		t.Fatalf("node addresses %v and %v", a.Addr, b.Addr)
	}
	listen := b.Addr.String() + ":18080"
	if network == NetNS {
		listen = "0.0.0.0:18080"
	}
	var serverOut strings.Builder
	url := "http://" + b.Addr.String() + ":18080/"
	spec := helperSpec("beta", "serve", listen, &serverOut)
	// The runner's side reaches the node: the unit is placed once its
	// probe answers from the host...
	spec.Ready = meshes.Probe{HTTPGet: url}
	_, srv, err := deployOne(ctx, p, "beta", spec)
	if err != nil {
		t.Fatal(err)
	}
	end := p.(runner.UsageMeter).MeterUsage([]runner.Process{srv})
	// ...and so does the other node.
	var out strings.Builder
	_, cl, err := deployOne(ctx, p, "alpha", helperSpec("alpha", "fetch", url, &out))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Err(); err != nil || out.String() != "hello from node" {
		t.Errorf("node alpha fetching from beta: %v, output %q", err, out.String())
	}
	// A live server has resident memory; its usage carries its placement.
	if u := end(); len(u) != 1 || u[0].Name != srv.Name() || u[0].Node != "beta" || u[0].Class != results.ClassApp || u[0].RSSMaxMB <= 0 {
		t.Errorf("usage of the server = %+v", u)
	}
	if network == NetNS {
		checkExists(t, id, true)
	}
	if err := p.Down(ctx); err != nil {
		t.Errorf("Down: %v", err)
	}
	select {
	case <-srv.Done():
	default:
		t.Error("Down left the server process running")
	}
	checkExists(t, id, false)
	if err := p.Down(ctx); err != nil {
		t.Errorf("second Down: %v", err)
	}
	if _, _, err := deployOne(ctx, p, "alpha", helperSpec("alpha", "fetch", url, io.Discard)); err == nil {
		t.Error("Deploy after Down succeeded")
	}
}

// upLoopback brings up a loopback platform with one node, alpha, taken
// down when the test ends.
func upLoopback(t *testing.T) (*platform, map[string]meshes.Node) {
	t.Helper()
	ctx := context.Background()
	rp, err := New(ctx, Options{RunID: newTestRunID(t), Network: Loopback, Self: os.Args[0]})
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := rp.Up(ctx, []string{"alpha"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rp.Down(ctx) })
	return rp.(*platform), nodes
}

// A unit whose process exits before its probe answers is not placed:
// the error says which process, and the processes started before it are
// stopped.
func TestIntegrationDeployNotReady(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	ctx := context.Background()
	p, nodes := upLoopback(t)
	addr := nodes["alpha"].Addr.String() + ":18081"
	srv := helperSpec("alpha", "serve", addr, io.Discard)
	srv.Ready = meshes.Probe{TCP: addr}
	// Not an app: it starts after the server, and exits at once.
	bad := runner.ProcessSpec{Name: "bad", Class: results.ClassProxy, Command: "false", Ready: meshes.Probe{TCP: nodes["alpha"].Addr.String() + ":1"}}
	_, err := p.Deploy(ctx, runner.Unit{Name: "u", ReadyTimeout: 10 * time.Second,
		Pods: []runner.Pod{{Node: "alpha", Processes: []runner.ProcessSpec{bad, srv}}}})
	if err == nil || !strings.Contains(err.Error(), "bad exited before it was ready") {
		t.Fatalf("Deploy = %v, want bad's exit named", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("the server placed before the failure still answers")
	}
}

func TestIntegrationNetNS(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root; the loopback test covers this host")
	}
	testPlatform(t, NetNS)
}

func TestIntegrationLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	testPlatform(t, Loopback)
}

func TestCleanupRemovesDeadRun(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	ctx := context.Background()
	id := newTestRunID(t)
	dir := DefaultStateDir()
	// A dead owner: a process that has exited.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	rec := record{RunID: id, PID: dead.Process.Pid, StartTicks: 1, Octet: -1}
	st := &state{dir: dir, rec: rec}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := st.save(); err != nil {
		t.Fatal(err)
	}
	orphan := exec.Command("sleep", "60")
	orphan.Env = append(os.Environ(), EnvRunID+"="+id)
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	go orphan.Wait()
	if os.Geteuid() == 0 {
		if out, err := exec.Command("ip", "netns", "add", nsName(id, "x")).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v %s", err, out)
		}
	}
	var logs strings.Builder
	if err := Cleanup(ctx, dir, logger{&logs}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "dead run "+id) {
		t.Errorf("cleanup did not report run %s: %q", id, logs.String())
	}
	checkExists(t, id, false)
	if len(processesByRun()[id]) > 0 {
		t.Error("orphan process survived cleanup")
	}
}

type logger struct{ w io.Writer }

func (l logger) Logf(f string, a ...any) { fmt.Fprintf(l.w, f+"\n", a...) }

func newTestRunID(t *testing.T) string {
	b := make([]byte, 3)
	f, _ := os.Open("/dev/urandom")
	defer f.Close()
	_, _ = io.ReadFull(f, b)
	return fmt.Sprintf("%x", b)
}

// checkExists asserts whether the run's namespaces, links, rules and state
// file exist.
func checkExists(t *testing.T, id string, want bool) {
	t.Helper()
	var found []string
	if os.Geteuid() == 0 {
		ns, _ := exec.Command("ip", "netns", "list").Output()
		if strings.Contains(string(ns), "mb-"+id+"-") {
			found = append(found, "netns")
		}
		links, _ := exec.Command("ip", "-o", "link", "show").Output()
		if strings.Contains(string(links), "mb-"+id) || strings.Contains(string(links), "mb"+id) {
			found = append(found, "links")
		}
		if _, err := exec.LookPath("iptables"); err == nil {
			rules, _ := exec.Command("iptables", "-w", "5", "-S").Output()
			if strings.Contains(string(rules), ruleComment(id)) {
				found = append(found, "iptables rule")
			}
		}
	}
	if _, err := os.Stat(statePath(DefaultStateDir(), id)); err == nil {
		found = append(found, "state file")
	}
	for _, c := range cgroupControllers {
		if _, err := os.Stat(runCgroup(c, id)); err == nil {
			found = append(found, "cgroup "+c)
		}
	}
	if want && len(found) < 3 && os.Geteuid() == 0 {
		t.Errorf("run %s: expected namespaces, links and state, found only %v", id, found)
	}
	if !want && len(found) > 0 {
		t.Errorf("run %s left behind: %v", id, found)
	}
}

// servedProcess deploys the serving helper on a loopback platform's node
// at port, ready, and returns its spec and process (an integration test:
// skipped with -short).
func servedProcess(t *testing.T, port int) (runner.ProcessSpec, *process) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	p, nodes := upLoopback(t)
	addr := fmt.Sprintf("%s:%d", nodes["alpha"].Addr, port)
	srv := helperSpec("alpha", "serve", addr, io.Discard)
	srv.Ready = meshes.Probe{TCP: addr}
	_, rp, err := deployOne(context.Background(), p, "alpha", srv)
	if err != nil {
		t.Fatal(err)
	}
	return srv, rp.(*process)
}

// TestIntegrationKillRestarts: a killed process starts again (a new
// incarnation, serving again) and is not done; the kubelet's back-off
// grows with each restart; Stop during a restart's delay ends it for good.
func TestIntegrationKillRestarts(t *testing.T) {
	ctx := context.Background()
	srv, pr := servedProcess(t, 18082)
	addr := srv.Ready.TCP
	if d := pr.backoff(); d != 0 {
		t.Errorf("first back-off %s, want 0 (a kubelet restarts at once the first time)", d)
	}
	first := pr.pid()
	pr.kill(0, 100*time.Millisecond, false)
	if err := runner.WaitReady(ctx, pr, srv.Ready, 10*time.Second); err != nil {
		t.Fatalf("after the kill: %v", err)
	}
	if pr.pid() == first {
		t.Errorf("the same pid %d serves: it was not killed", first)
	}
	select {
	case <-pr.Done():
		t.Fatalf("the process is done after a restart: %v", pr.Err())
	default:
	}
	if d := pr.backoff(); d != 10*time.Second {
		t.Errorf("back-off after one restart %s, want 10s", d)
	}
	// Killed again with a long delay, then stopped before it restarts.
	pr.kill(0, time.Hour, false)
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := pr.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pr.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Stop during a restart's delay did not end the process")
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("something still serves after Stop")
	}
}

// TestIntegrationPauseAcrossRestarts: a container restarted while its pod
// is failed stays stopped until the failure ends; a replaced pod (a
// pod-kill) is a new pod, running, and the old failure's end leaves it be.
func TestIntegrationPauseAcrossRestarts(t *testing.T) {
	ctx := context.Background()
	srv, pr := servedProcess(t, 18083)
	state := func() string {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pr.pid()))
		if err != nil {
			return "gone"
		}
		i := strings.LastIndexByte(string(stat), ')')
		return string(stat[i+2])
	}
	waitState := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for state() != want {
			if time.Now().After(deadline) {
				t.Fatalf("process %d in state %s, want %s", pr.pid(), state(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	resume, err := pr.pause()
	if err != nil {
		t.Fatal(err)
	}
	waitState("T")
	first := pr.pid()
	pr.kill(0, 50*time.Millisecond, false) // a container restart
	deadline := time.Now().Add(10 * time.Second)
	for pr.pid() == first && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	waitState("T") // the new incarnation, stopped too
	if err := resume(); err != nil {
		t.Fatal(err)
	}
	if err := runner.WaitReady(ctx, pr, srv.Ready, 10*time.Second); err != nil {
		t.Fatalf("after the failure ended: %v", err)
	}
	// A failure, then the pod replaced: the new pod runs.
	resume, err = pr.pause()
	if err != nil {
		t.Fatal(err)
	}
	waitState("T")
	second := pr.pid()
	pr.kill(0, 50*time.Millisecond, true)
	for pr.pid() == second && time.Now().Before(deadline.Add(10*time.Second)) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := runner.WaitReady(ctx, pr, srv.Ready, 10*time.Second); err != nil {
		t.Fatalf("the replaced pod does not serve: %v", err)
	}
	if err := resume(); err != nil {
		t.Errorf("the old failure's end: %v", err)
	}
	if s := state(); s == "T" {
		t.Errorf("the replaced pod is stopped")
	}
}
