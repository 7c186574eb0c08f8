package main

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshbench/meshbench/runner"
	"github.com/meshbench/meshbench/runner/kind"
	"github.com/meshbench/meshbench/runner/kind/nodeimage"
	"github.com/meshbench/meshbench/runner/results"
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
	// Cold, the reference proxies' root filesystem is built first
	// (debootstrap and apt, minutes on this machine: a clean-clone CI
	// run on a fresh machine took more than one); cached after that.
	r := meshbench(t, 10*time.Minute, "cluster", "build-image", "--output", archive)
	if r.code != 0 {
		t.Fatalf("build-image --output: exit %d\n%s", r.code, r.stderr)
	}
	ref := "meshbench.local/meshbench:dev"
	tags := archiveTags(t, archive)
	slices.Sort(tags)
	if len(tags) != 3 || !initRE.MatchString(tags[0]) || tags[1] != ref || !referenceRE.MatchString(tags[2]) {
		t.Errorf("archive tags = %v, want %s, the init image and the reference proxies'", tags, ref)
	}
	r = meshbench(t, 2*time.Minute, "cluster", "build-image")
	if r.code != 0 || !strings.Contains(r.stdout, "Loaded image: "+ref) {
		t.Fatalf("build-image: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	initRef := initRE.FindString(r.stdout)
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "--force", ref, initRef).Run() })
	// The reference proxies' image carries the host's HAProxy and nginx
	// builds (the same Debian packages, updates included).
	refProxies := referenceRE.FindString(r.stdout)
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "--force", refProxies).Run() })
	for _, c := range [][]string{{"haproxy", "-v"}, {"nginx", "-v"}} {
		want, _ := exec.Command(c[0], c[1]).CombinedOutput()
		got, err := exec.Command("docker", append([]string{"run", "--rm", refProxies}, c...)...).CombinedOutput()
		if err != nil || firstLine(got) != firstLine(want) {
			t.Errorf("%s in the image: %q (%v), on the host: %q", c[0], firstLine(got), err, firstLine(want))
		}
	}
	for _, args := range [][]string{{"run", "--rm", ref, "version"}, {"run", "--rm", "--privileged", ref, "version"}} {
		out, err := exec.Command("docker", args...).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "meshbench dev") {
			t.Errorf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	// A dynamically linked binary cannot run in the image: bad input.
	r = meshbench(t, time.Minute, "cluster", "build-image", "--reference=false", "--binary", "/bin/sh", "--output", archive+".2")
	if r.code != 2 || !strings.Contains(r.stderr, "dynamically linked") {
		t.Errorf("--binary /bin/sh: exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(archive + ".2"); err == nil {
		t.Error("a refused build wrote its output")
	}
}

// waitService waits until the loadgen node reaches a Service's port 8080:
// kube-proxy programs a new Service's rules a moment after its pod is Ready
// (probing at once, 6 of 20 connections were refused), and the node's own
// traffic meets the same rules as its pods'.
func waitService(t *testing.T, cluster, svc string) {
	t.Helper()
	ip, err := kubectlIn(t, cluster, "get", "service", svc, "-o", "jsonpath={.spec.clusterIP}")
	if err != nil {
		t.Fatalf("service %s: %v\n%s", svc, err, ip)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		err := exec.Command("docker", "exec", cluster+"-worker", "timeout", "2", "bash", "-c", "exec 3<>/dev/tcp/"+ip+"/8080").Run()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("service %s (%s:8080) unreachable from the loadgen node after 1m: %v", svc, ip, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// initRE matches the init image's reference.
var initRE = regexp.MustCompile(`meshbench\.local/meshbench-init:[a-zA-Z0-9._-]+`)

// referenceRE matches the reference proxies' image reference.
var referenceRE = regexp.MustCompile(`meshbench\.local/reference-proxies:[a-z]+-[0-9a-f]{10}`)

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
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

// testClusterRE matches the clusters TestIntegrationKindCluster names.
var testClusterRE = regexp.MustCompile(`^meshbench-t[0-9a-f]{6}$`)

// kubectlIn runs kubectl on a cluster's control-plane node with its admin
// credentials (the host has no kubectl).
func kubectlIn(t *testing.T, cluster string, args ...string) (string, error) {
	t.Helper()
	all := append([]string{"exec", cluster + "-control-plane", "kubectl", "--kubeconfig=/etc/kubernetes/admin.conf"}, args...)
	out, err := exec.Command("docker", all...).CombinedOutput()
	return string(out), err
}

// A real kind cluster on this machine: created from the offline node
// image (make test builds it, or loads it from the cache, before the
// tests), idempotent, its nodes labelled by role, meshbench's image loaded
// with kind's image loading and run as a pod on the system-under-test
// node, then deleted without a trace.
func TestIntegrationKindCluster(t *testing.T) {
	engine(t)
	// A killed earlier run of this test leaves its cluster: remove it.
	if r := meshbench(t, time.Minute, "cluster", "list"); r.code == 0 {
		for _, c := range strings.Fields(r.stdout) {
			if testClusterRE.MatchString(c) {
				t.Logf("removing %s, left by an earlier run", c)
				_ = exec.Command(meshbenchBin, "cluster", "delete", c).Run()
			}
		}
	}
	name := fmt.Sprintf("t%06x", time.Now().UnixNano()&0xffffff)
	full := "meshbench-" + name
	t.Cleanup(func() { _ = exec.Command(meshbenchBin, "cluster", "delete", name).Run() })

	// The offline image make test built (on a cgroup v2 host, auto would
	// take kind's upstream image, which needs a registry).
	share := t.TempDir()
	r := meshbench(t, 45*time.Minute, "cluster", "create", name, "--node-image", "offline", "--wait", "5m", "--share", share)
	if r.code != 0 || !strings.Contains(r.stdout, "cluster "+full+" created") {
		t.Fatalf("cluster create: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	t.Logf("create: %s", lastLines(r.stderr, 3))
	// Idempotent: a second create leaves it.
	if r := meshbench(t, 5*time.Minute, "cluster", "create", name); r.code != 0 || !strings.Contains(r.stdout, "exists") {
		t.Errorf("second create: exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	// A name whose hash gives the ranges of this one is refused before
	// anything is made.
	clash := ""
	for i := 0; clash == ""; i++ {
		if c := fmt.Sprintf("%s-c%d", name, i); kind.PodSubnet(kind.FullName(c)) == kind.PodSubnet(full) {
			clash = c
		}
	}
	t.Cleanup(func() { _ = exec.Command(meshbenchBin, "cluster", "delete", clash).Run() })
	if r := meshbench(t, 5*time.Minute, "cluster", "create", clash); r.code != 2 || !strings.Contains(r.stderr, "its pod and service ranges are another cluster's") || !strings.Contains(r.stderr, "as "+full+"'s") {
		t.Errorf("create of %s, whose ranges are %s's: exit %d, want 2 naming it\nstderr: %s", clash, full, r.code, r.stderr)
	}
	if r := meshbench(t, time.Minute, "cluster", "list"); r.code != 0 || !strings.Contains(r.stdout, full+"\n") || strings.Contains(r.stdout, clash) {
		t.Errorf("list: exit %d, stdout %q", r.code, r.stdout)
	}
	if r := meshbench(t, time.Minute, "cluster", "kubeconfig", name); r.code != 0 || !strings.Contains(r.stdout, "server: https://127.0.0.1:") {
		t.Errorf("kubeconfig: exit %d, stdout %q", r.code, r.stdout)
	}
	// Every node Ready, the workers labelled by role.
	out, err := kubectlIn(t, full, "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name} {.metadata.labels.meshbench\.dev/role} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
	if err != nil {
		t.Fatalf("get nodes: %v\n%s", err, out)
	}
	want := []string{full + "-control-plane  True", full + "-worker loadgen True", full + "-worker2 sut True"}
	for _, w := range want {
		if !strings.Contains(out, w+"\n") {
			t.Errorf("nodes:\n%s\nwant a line %q", out, w)
		}
	}

	// meshbench's image, loaded with kind's image loading, runs as a pod
	// on the system-under-test node.
	r = meshbench(t, 5*time.Minute, "cluster", "build-image", "--cluster", name)
	if r.code != 0 {
		t.Fatalf("build-image --cluster: exit %d\n%s", r.code, r.stderr)
	}
	refProxies := referenceRE.FindString(r.stdout)
	if out, err := kubectlIn(t, full, "run", "haproxy-version", "--image="+refProxies, "--image-pull-policy=Never",
		"--restart=Never", "--", "haproxy", "-v"); err != nil {
		t.Fatalf("kubectl run haproxy: %v\n%s", err, out)
	}
	if out, err := kubectlIn(t, full, "wait", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=2m", "pod/haproxy-version"); err != nil {
		t.Errorf("haproxy -v in the cluster: %v\n%s", err, out)
	} else if out, _ := kubectlIn(t, full, "logs", "haproxy-version"); !strings.HasPrefix(out, "HAProxy version") {
		t.Errorf("haproxy -v in the cluster said %q", out)
	}
	if out, err := kubectlIn(t, full, "run", "mb-version", "--image=meshbench.local/meshbench:dev", "--image-pull-policy=Never",
		"--restart=Never", `--overrides={"spec":{"nodeSelector":{"meshbench.dev/role":"sut"}}}`, "--", "version"); err != nil {
		t.Fatalf("kubectl run: %v\n%s", err, out)
	}
	if out, err := kubectlIn(t, full, "wait", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=2m", "pod/mb-version"); err != nil {
		desc, _ := kubectlIn(t, full, "describe", "pod", "mb-version")
		t.Fatalf("the pod did not succeed: %v\n%s\n%s", err, out, desc)
	}
	if out, _ := kubectlIn(t, full, "logs", "mb-version"); !strings.HasPrefix(out, "meshbench dev") {
		t.Errorf("pod output %q", out)
	}
	if out, _ := kubectlIn(t, full, "get", "pod", "mb-version", "-o", "jsonpath={.spec.nodeName}"); out != full+"-worker2" {
		t.Errorf("the pod ran on %q, want the sut node", out)
	}

	// Across nodes, by name: a server pod on the sut node behind a
	// Service, probed from the loadgen node through CoreDNS and kube-proxy.
	onNode := func(role string) string {
		return `--overrides={"spec":{"nodeSelector":{"meshbench.dev/role":"` + role + `"}}}`
	}
	if out, err := kubectlIn(t, full, "run", "echo", "--image=meshbench.local/meshbench:dev", "--image-pull-policy=Never",
		"--restart=Never", "--port=8080", onNode("sut"), "--", "workload", "server", "--name", "echo", "--listen", "0.0.0.0:8080"); err != nil {
		t.Fatalf("kubectl run echo: %v\n%s", err, out)
	}
	if out, err := kubectlIn(t, full, "expose", "pod", "echo", "--port=8080"); err != nil {
		t.Fatalf("kubectl expose: %v\n%s", err, out)
	}
	if out, err := kubectlIn(t, full, "wait", "--for=condition=Ready", "--timeout=2m", "pod/echo"); err != nil {
		t.Fatalf("echo not ready: %v\n%s", err, out)
	}
	waitService(t, full, "echo")
	if out, err := kubectlIn(t, full, "run", "probe", "--image=meshbench.local/meshbench:dev", "--image-pull-policy=Never",
		"--restart=Never", onNode("loadgen"), "--", "workload", "probe", "--url", "http://echo.default.svc.cluster.local:8080/", "--count", "20"); err != nil {
		t.Fatalf("kubectl run probe: %v\n%s", err, out)
	}
	if out, err := kubectlIn(t, full, "wait", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=2m", "pod/probe"); err != nil {
		logs, _ := kubectlIn(t, full, "logs", "probe")
		t.Fatalf("probe did not succeed: %v\n%s\n%s", err, out, logs)
	}
	out, _ = kubectlIn(t, full, "logs", "probe")
	var pr struct {
		Requests int            `json:"requests"`
		Codes    map[int]int    `json:"codes"`
		ServedBy map[string]int `json:"servedBy"`
	}
	if err := json.Unmarshal([]byte(out), &pr); err != nil || pr.Requests != 20 || pr.Codes[200] != 20 || pr.ServedBy["echo"] != 20 {
		t.Errorf("probe across nodes: %+v (%v)\n%s", pr, err, out)
	}

	// Interception as the kind platform will install it for sidecars: an
	// init container (meshbench's init image, NET_ADMIN) redirects the
	// pod's inbound port 8080 to 15006, where the "proxy" (here a server
	// that names itself) listens; the Service's clients never know.
	initRef := initRE.FindString(r.stdout)
	manifest := `apiVersion: v1
kind: Pod
metadata: {name: intercepted, labels: {app: intercepted}}
spec:
  nodeSelector: {meshbench.dev/role: sut}
  initContainers:
  - name: redirect
    image: ` + initRef + `
    imagePullPolicy: Never
    args: [redirect, --inbound, "8080:15006"]
    securityContext: {capabilities: {add: [NET_ADMIN, NET_RAW]}}
  containers:
  - name: proxy
    image: meshbench.local/meshbench:dev
    imagePullPolicy: Never
    args: [workload, server, --name, redirected, --listen, "0.0.0.0:15006"]
    readinessProbe: {tcpSocket: {port: 15006}}
---
apiVersion: v1
kind: Service
metadata: {name: intercepted}
spec:
  selector: {app: intercepted}
  ports: [{port: 8080, targetPort: 8080}]
`
	apply := exec.Command("docker", "exec", "-i", full+"-control-plane", "kubectl", "--kubeconfig=/etc/kubernetes/admin.conf", "apply", "-f", "-")
	apply.Stdin = strings.NewReader(manifest)
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	if out, err := kubectlIn(t, full, "wait", "--for=condition=Ready", "--timeout=2m", "pod/intercepted"); err != nil {
		desc, _ := kubectlIn(t, full, "describe", "pod", "intercepted")
		t.Fatalf("intercepted not ready: %v\n%s\n%s", err, out, desc)
	}
	waitService(t, full, "intercepted")
	if out, err := kubectlIn(t, full, "run", "probe-intercepted", "--image=meshbench.local/meshbench:dev", "--image-pull-policy=Never",
		"--restart=Never", onNode("loadgen"), "--", "workload", "probe", "--url", "http://intercepted.default.svc.cluster.local:8080/", "--count", "20"); err != nil {
		t.Fatalf("kubectl run probe-intercepted: %v\n%s", err, out)
	}
	if out, err := kubectlIn(t, full, "wait", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=2m", "pod/probe-intercepted"); err != nil {
		logs, _ := kubectlIn(t, full, "logs", "probe-intercepted")
		t.Fatalf("probe-intercepted did not succeed: %v\n%s\n%s", err, out, logs)
	}
	out, _ = kubectlIn(t, full, "logs", "probe-intercepted")
	pr.ServedBy, pr.Codes = nil, nil
	if err := json.Unmarshal([]byte(out), &pr); err != nil || pr.Codes[200] != 20 || pr.ServedBy["redirected"] != 20 {
		t.Errorf("port 8080 of the intercepted pod was not redirected to 15006: %+v (%v)\n%s", pr, err, out)
	}

	// Resources from the kubelets, as the kind platform reads them: the
	// echo server's container has a working set.
	r = meshbench(t, time.Minute, "cluster", "top", name, "--window", "3s")
	if r.code != 0 {
		t.Fatalf("top: exit %d\n%s", r.code, r.stderr)
	}
	var echoLine []string
	for _, line := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(line); len(f) == 5 && f[0] == "echo/echo" {
			echoLine = f
		}
	}
	if echoLine == nil || echoLine[1] != full+"-worker2" || strings.HasPrefix(echoLine[3], "0.0/") {
		t.Errorf("top has no working set for echo/echo on the sut node:\n%s", r.stdout)
	}

	if os.Geteuid() == 0 {
		kindRunKilled(t, name, share)
		kubeRun(t, name, share)
	} else {
		t.Log("not root: the runs on this cluster (kind and kube) and the SIGKILL recovery are not tried (they route this host to the pods, which needs root)")
	}

	if r := meshbench(t, 2*time.Minute, "cluster", "delete", name); r.code != 0 {
		t.Fatalf("delete: exit %d\n%s", r.code, r.stderr)
	}
	if out, _ := exec.Command("docker", "ps", "-a", "--filter", "label=io.x-k8s.kind.cluster="+full, "-q").Output(); len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("containers left after delete: %s", out)
	}
	if r := meshbench(t, time.Minute, "cluster", "delete", name); r.code != 0 {
		t.Errorf("deleting a deleted cluster: exit %d\n%s", r.code, r.stderr)
	}
	if r := meshbench(t, time.Minute, "cluster", "kubeconfig", name); r.code != 2 || !strings.Contains(r.stderr, "no meshbench cluster "+full) {
		t.Errorf("kubeconfig of a deleted cluster: exit %d, stderr %q", r.code, r.stderr)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// kindRunKilled runs on a named cluster (created with --share share): a
// results directory outside the share is bad input; a run SIGKILLed
// mid-trial leaves its namespace, routes, image and control directory,
// and the next start removes them.
func kindRunKilled(t *testing.T, name, share string) {
	t.Helper()
	full := "meshbench-" + name
	elsewhere := filepath.Join(t.TempDir(), "elsewhere")
	if r := meshbench(t, 5*time.Minute, "run", "smoke", "--platform", "kind", "--cluster", name, "--out", elsewhere); r.code != 2 ||
		!strings.Contains(r.stderr, "not shared with the cluster's nodes") {
		t.Errorf("run with --out outside the share: exit %d, want 2\n%s", r.code, r.stderr)
	}
	// A cluster that does not answer (its kubeconfig cannot be read, its
	// API server is paused): bad input, and the run starts nothing.
	before, _ := filepath.Glob("/run/meshbench/kind/*.json")
	if out, err := exec.Command("docker", "pause", full+"-control-plane").CombinedOutput(); err != nil {
		t.Fatalf("docker pause: %v: %s", err, out)
	}
	unpause := func() { _ = exec.Command("docker", "unpause", full+"-control-plane").Run() }
	t.Cleanup(unpause)
	paused := meshbench(t, 2*time.Minute, "run", "smoke", "--platform", "kind", "--cluster", name, "--out", filepath.Join(share, "paused"))
	unpause()
	if paused.code != 2 || !strings.Contains(paused.stderr, "--cluster: cluster "+full+": the cluster does not answer") {
		t.Errorf("run on a paused cluster: exit %d, want 2 and the cluster named\n%s", paused.code, paused.stderr)
	}
	if after, _ := filepath.Glob("/run/meshbench/kind/*.json"); len(after) != len(before) {
		t.Errorf("run on a paused cluster left state files: before %v, after %v", before, after)
	}
	if _, err := os.Stat(filepath.Join(share, "paused")); err == nil {
		t.Errorf("run on a paused cluster created its results directory")
	}
	// No meshbench-init image in the nodes (build-image --cluster loaded
	// one): the runs load theirs, and so remove it.
	removeInitImages(full)
	killedOut := filepath.Join(share, "killed")
	killed, data := killMidTrial(t, full, killedOut, []string{"state file", "namespace", "control directory", "routes"},
		"--platform", "kind", "--cluster", name)
	if !strings.Contains(data, "loaded meshbench.local/meshbench-init:") {
		t.Errorf("the killed run did not load its image:\n%s", data)
	}
	// The next run is per-node's shared node with the L4 node proxies,
	// alone and with waypoints: pods sharing a Kubernetes node, and HBONE
	// tunnels between pods.
	nextOut := filepath.Join(share, "next")
	next := meshbench(t, 10*time.Minute, "run", "per-node", "--platform", "kind", "--cluster", name,
		"--modes", "baseline,meshbench-l4/per-node,meshbench-waypoint/per-node", "--trials", "1", "--duration", "2s", "--out", nextOut)
	if next.code != 0 {
		t.Fatalf("next run: exit %d\n%s", next.code, next.stderr)
	}
	checkL4OnPods(t, nextOut, "meshbench-l4/per-node", 3)
	// The shared node is a DaemonSet's pod on the system under test's
	// worker; the control plane's node a Deployment's, on the load
	// generator's.
	checkPodOwners(t, nextOut, map[string]string{"shared": "DaemonSet/shared on " + full + "-worker2",
		"control-plane": "Deployment/control-plane on " + full + "-worker", "backend-1": "Pod/backend-1 on " + full + "-worker2"})
	// A waypoint per service (frontend and the 4 backends) beside them.
	checkL4OnPods(t, nextOut, "meshbench-waypoint/per-node", 3+5)
	if !strings.Contains(next.stderr, "removing leftovers of dead kind run "+killed) {
		t.Errorf("the next run did not report removing run %s's leftovers:\n%s", killed, next.stderr)
	}
	// A replicated service on pods: every pod served, with and without
	// a sidecar (the baseline's spread is the redirect container's
	// kube-proxy rules in the client's pod).
	replOut := filepath.Join(share, "replicas")
	repl := meshbench(t, 10*time.Minute, "run", "testdata/replicas.yaml", "--platform", "kind", "--cluster", name, "--out", replOut)
	if repl.code != 0 {
		t.Fatalf("replicated run: exit %d\n%s", repl.code, repl.stderr)
	}
	checkReplicasServed(t, replOut, []string{"none/baseline", "meshbench/sidecar"}, []string{"server", "server-1", "server-2"})
	checkClusterIP(t, replOut, "server")
	// The service's three pods are one Deployment's, each a node's.
	checkPodOwners(t, replOut, map[string]string{"server": "Deployment/server on " + full + "-worker2",
		"server-1": "Deployment/server on " + full + "-worker2", "server-2": "Deployment/server on " + full + "-worker2"})
	checkDistinctPods(t, replOut, "server", "server-1", "server-2")
	// Pods of the shared node calling each other, through the node
	// proxy's ports of their own, which take their pod's connections
	// alone: the pods' own addresses reach them (no SNAT on the node).
	sharedOut := filepath.Join(share, "shared-calls")
	sharedArgs := []string{"run", "testdata/shared-calls.yaml", "--platform", "kind", "--cluster", name,
		"--modes", "meshbench/per-node,meshbench-l4/per-node,haproxy/per-node", "--out", sharedOut}
	sm, sharedTrials := runAll(t, 10*time.Minute, sharedOut, sharedArgs...)
	if len(sharedTrials) != 3 {
		t.Errorf("shared calls on kind: %d trials, want 3", len(sharedTrials))
	}
	for _, tr := range sharedTrials {
		// Every request went the whole way: leaf answers mid's calls.
		if tr.Errors != 0 || tr.Requests == 0 || len(tr.Services) != 3 {
			t.Errorf("shared calls on kind, %s: %d errors of %d requests (codes %v), services %d", tr.Key(), tr.Errors, tr.Requests, tr.Codes, len(tr.Services))
		}
		for _, s := range tr.Services {
			if s.Requests == 0 || s.CallErrors != 0 {
				t.Errorf("shared calls on kind, %s: service %s served %d requests, %d of its %d calls failed (%s)", tr.Key(), s.Name, s.Requests, s.CallErrors, s.Calls, s.FirstError)
			}
		}
	}
	faultsOut := filepath.Join(share, "faults")
	fm := kindFaults(t, name, faultsOut)
	for id, out := range map[string]string{killed: killedOut, runID(t, next.stderr): nextOut, runID(t, repl.stderr): replOut, sm.RunID: sharedOut, fm.RunID: faultsOut} {
		if l := kindLeftovers(t, full, id, out); len(l) > 0 {
			t.Errorf("run %s left behind: %v", id, l)
		}
	}
	for _, n := range clusterNodes(full) {
		if imgs := initImages(n); len(imgs) > 0 {
			t.Errorf("node %s still has %v, which the runs loaded", n, imgs)
		}
	}
}

// kindFaults runs faults on kind's pods, as TestIntegrationFaults and
// TestIntegrationFaultKill do locally, on the baseline and the server
// with a sidecar: a pod failure holds requests up for its 2 s; a kill of
// the sidecar (restarted at once; nothing to kill on the baseline) and of
// the whole pod (started again a second later) fail requests; a
// partition of the server (through its pod's fault agent) has it serve
// nothing; so does one of the client, whose baseline dials the server's
// ClusterIP (which its node, not its pod, translates); a loss of 30% of
// the server's packets drops about that share of them (the agent counts
// them) while it still serves, TCP retransmitting; a bandwidth limit of
// its egress to 10 KB/s (200 rps of its small answers, with their
// headers, take about four times that) holds the client to far fewer
// requests, some still answered; and the server serves again afterwards. The partitions reset connections, so that
// the recovery waits for no TCP retransmission.
func kindFaults(t *testing.T, cluster, out string) *results.Manifest {
	t.Helper()
	reject := "      partitionBehavior: reject\n"
	sc := faultScenario(t, "28s", []string{"baseline", "sidecar"},
		fault("1s", "PodChaos", "freeze", fmt.Sprintf(freezeSpec, "2s")),
		fault("4s", "PodChaos", "proxy-kill", "      action: container-kill\n      containerNames: [proxy]\n"),
		fault("5s", "PodChaos", "pod-kill", "      action: pod-kill\n"),
		fault("8s", "NetworkChaos", "cut", fmt.Sprintf(partitionSpec, "3s")+reject),
		strings.Replace(fault("12s", "NetworkChaos", "cut-client", fmt.Sprintf(partitionSpec, "3s")+reject), "app: server", "app: client", 1),
		fault("16s", "NetworkChaos", "lossy", "      action: loss\n      loss: {loss: \"30\"}\n      duration: 3s\n"),
		fault("20s", "NetworkChaos", "narrow", "      action: bandwidth\n      bandwidth: {rate: 10kbps, buffer: 2000, limit: 20000}\n      duration: 3s\n"))
	m, trials := runAll(t, 10*time.Minute, out, "run", sc, "--platform", "kind", "--cluster", cluster, "--out", out)
	if len(trials) != 2 {
		t.Fatalf("faults on kind: %d trials, want 2", len(trials))
	}
	for _, tr := range trials {
		kindFaultsTrial(t, out, tr)
	}
	return m
}

// kindFaultsTrial checks a trial of kindFaults.
func kindFaultsTrial(t *testing.T, out string, tr *results.Trial) {
	t.Helper()
	sidecar := tr.Mode == "sidecar"
	var series strings.Builder
	for _, sec := range tr.Series {
		fmt.Fprintf(&series, " %.0f:%d/%d", sec.Start, sec.Requests, sec.Errors)
	}
	t.Logf("faults on kind, %s: %d errors, max %.0f ms; faults %+v; second:requests/errors%s", tr.Key(), tr.Errors, tr.LatencyMs.Max, tr.Faults, series.String())
	if len(tr.Faults) != 7 || tr.Faults[0].Executor != "SIGSTOP/SIGCONT" || tr.Faults[0].End-tr.Faults[0].Start < 2 ||
		!strings.Contains(tr.Faults[1].Executor, "back-off") || !strings.Contains(tr.Faults[2].Executor, "replacement") {
		t.Fatalf("faults on kind, %s: %+v, want the pod failure, the sidecar's kill, the pod's, two partitions, a loss and a bandwidth limit", tr.Key(), tr.Faults)
	}
	for i, f := range tr.Faults[:5] {
		target, note := "server", ""
		if i == 4 {
			target = "client"
		}
		if i == 1 && !sidecar {
			note = "nothing to kill in the pod of server"
		}
		if f.Error != "" || f.Note != note || len(f.Targets) != 1 || f.Targets[0] != target {
			t.Errorf("faults on kind, %s: %s recorded as %+v, want target %s and note %q", tr.Key(), f.Name, f, target, note)
		}
	}
	if tr.LatencyMs.Max < 1500 {
		t.Errorf("faults on kind, %s: max latency %.0f ms: the 2 s pod failure held up no request", tr.Key(), tr.LatencyMs.Max)
	}
	if tr.Errors == 0 {
		t.Errorf("faults on kind, %s: no request failed: the kills did not reach the traffic", tr.Key())
	}
	if !hasEvent(tr, "fault agents (iptables, tc) in the pods of server, client") {
		t.Errorf("faults on kind, %s: events %+v, want the fault agents of server and client", tr.Key(), tr.Events)
	}
	// Every whole second of the server's own counts inside either
	// partition (300 ms in from either end) is empty, and no request of
	// the client's seconds inside its own partition succeeds.
	server := perSecond(t, tr, "server")
	for _, cut := range tr.Faults[3:5] {
		if cut.Executor != "iptables" || cut.End-cut.Start < 3 {
			t.Errorf("faults on kind, %s: %s recorded as %+v, want 3 s by iptables", tr.Key(), cut.Name, cut)
			continue
		}
		inside := 0
		for _, sec := range server {
			if sec.from >= cut.Start+0.3 && sec.to <= cut.End-0.3 {
				inside++
				if sec.n != 0 {
					t.Errorf("faults on kind, %s: the server served %d requests in %.1f-%.1fs, inside %s (%.1f-%.1fs)", tr.Key(), sec.n, sec.from, sec.to, cut.Name, cut.Start, cut.End)
				}
			}
		}
		if inside == 0 {
			t.Errorf("faults on kind, %s: no whole second of the server's counts inside %s (%.1f-%.1fs)", tr.Key(), cut.Name, cut.Start, cut.End)
		}
	}
	client := tr.Faults[4]
	for _, sec := range tr.Series {
		if sec.Start >= client.Start+0.3 && sec.Start+1 <= client.End-0.3 && sec.Errors != sec.Requests {
			t.Errorf("faults on kind, %s: %d of %d requests in second %.0f succeeded, inside the client's partition (%.1f-%.1fs)", tr.Key(), sec.Requests-sec.Errors, sec.Requests, sec.Start, client.Start, client.End)
		}
	}
	// The loss: executed by the agent, which counted what it dropped;
	// the server served in every whole second of it.
	lossy := tr.Faults[5]
	checkLossCounts(t, "faults on kind, "+tr.Key(), lossy, 30)
	if len(lossy.Targets) != 1 || lossy.Targets[0] != "server" || lossy.End-lossy.Start < 3 {
		t.Errorf("faults on kind, %s: the loss recorded as %+v, want 3 s on server", tr.Key(), lossy)
	}
	inside := 0
	for _, sec := range server {
		if sec.from >= lossy.Start+0.3 && sec.to <= lossy.End-0.3 {
			inside++
			if sec.n == 0 {
				t.Errorf("faults on kind, %s: the server served nothing in %.1f-%.1fs, inside a 30%% loss (%.1f-%.1fs)", tr.Key(), sec.from, sec.to, lossy.Start, lossy.End)
			}
		}
	}
	if inside == 0 {
		t.Errorf("faults on kind, %s: no whole second of the server's counts inside the loss (%.1f-%.1fs)", tr.Key(), lossy.Start, lossy.End)
	}
	// The bandwidth limit: the client's seconds inside it send at most
	// half of their 200 requests, and some are answered.
	narrow := tr.Faults[6]
	if narrow.Executor != runner.ExecTBF || narrow.Error != "" || narrow.Note != "" || len(narrow.Targets) != 1 || narrow.Targets[0] != "server" || narrow.End-narrow.Start < 3 {
		t.Errorf("faults on kind, %s: the bandwidth limit recorded as %+v, want 3 s on server by %q", tr.Key(), narrow, runner.ExecTBF)
	}
	inside = 0
	for _, sec := range tr.Series {
		if sec.Start >= narrow.Start+0.3 && sec.Start+1 <= narrow.End-0.3 {
			inside++
			if sec.Requests > 100 || sec.Requests-sec.Errors < 1 {
				t.Errorf("faults on kind, %s: %d requests (%d failed) in second %.0f, inside a 10 KB/s limit of the server's egress (%.1f-%.1fs): want 1 to 100 answered", tr.Key(), sec.Requests, sec.Errors, sec.Start, narrow.Start, narrow.End)
			}
		}
	}
	if inside == 0 {
		t.Errorf("faults on kind, %s: no whole second inside the bandwidth limit (%.1f-%.1fs)", tr.Key(), narrow.Start, narrow.End)
	}
	// Recovered: the last whole second (27-28 s, 4 s after the limit,
	// when a retransmission it held back four times has timed its
	// request out) sends requests and none fails.
	var last results.Second
	for _, sec := range tr.Series {
		if sec.Start == 27 {
			last = sec
		}
	}
	if last.Requests < 50 || last.Errors != 0 {
		t.Errorf("faults on kind, %s: the last second %+v: the server did not come back (series %+v)", tr.Key(), last, tr.Series)
	}
	// The sidecar was started again twice in its container, the app once.
	want := map[string]int{"server": 1}
	if sidecar {
		want["server-sidecar"] = 2
	}
	logs := filepath.Join(out, tr.Dir(), results.LogsDir)
	for name, want := range want {
		data, err := os.ReadFile(filepath.Join(logs, name+".stderr.log"))
		if n := strings.Count(string(data), "pod-process: killed to be restarted"); err != nil || n != want {
			t.Errorf("faults on kind, %s: %s restarted %d times (%v), want %d", tr.Key(), name, n, err, want)
		}
	}
}

// checkL4OnPods checks a row of the L4 node proxies of a per-node run
// on pods: measured without errors, its proxies (a node proxy per node:
// the client's, the frontend's, the shared node's; and any waypoints)
// with the kubelet's figures, and every call of the frontend to the four
// backends answered. The apps dial only their node proxy's ports, so the
// calls crossed the tunnels.
func checkL4OnPods(t *testing.T, out, row string, want int) {
	t.Helper()
	trials, err := results.ReadTrials(out)
	if err != nil {
		t.Fatal(err)
	}
	var l4 *results.Trial
	for _, tr := range trials {
		if tr.Key() == row {
			l4 = tr
		}
	}
	if l4 == nil {
		t.Fatalf("no %s trial in %s", row, out)
	}
	if l4.Requests == 0 || l4.Errors != 0 {
		t.Errorf("%s on pods: %d requests, %d errors", row, l4.Requests, l4.Errors)
	}
	var proxies []string
	for _, u := range l4.Components {
		if u.Class != results.ClassProxy {
			continue
		}
		proxies = append(proxies, u.Name)
		if u.Source != "kubelet summary API" || u.CPUMillicores <= 0 || u.WorkingSetMaxMB <= 0 {
			t.Errorf("%s: proxy %s's figures %+v, want CPU and memory from the kubelet", row, u.Name, u)
		}
	}
	if len(proxies) != want {
		t.Errorf("%s: proxies %v, want %d", row, proxies, want)
	}
	i := slices.IndexFunc(l4.Services, func(s results.ServiceCount) bool { return s.Name == "frontend" })
	if i < 0 {
		t.Fatalf("%s on pods: no frontend counts in %+v", row, l4.Services)
	}
	if s := l4.Services[i]; s.Calls < 4*s.Requests || s.Requests == 0 || s.CallErrors != 0 {
		t.Errorf("%s: frontend over the tunnels: %d requests, %d calls, %d failed; want 4 calls per request, none failed", row, s.Requests, s.Calls, s.CallErrors)
	}
}

// checkReplicasServed checks that each row of a run measured without
// errors and that every pod of a replicated service served some of it.
func checkReplicasServed(t *testing.T, out string, rows, pods []string) {
	t.Helper()
	trials, err := results.ReadTrials(out)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, tr := range trials {
		seen[tr.Key()] = true
		if tr.Requests == 0 || tr.Errors != 0 {
			t.Errorf("%s: %d requests, %d errors", tr.Key(), tr.Requests, tr.Errors)
		}
		served := map[string]int64{}
		for _, s := range tr.Services {
			served[s.Name] = s.Requests
		}
		for _, p := range pods {
			if served[p] <= 0 {
				t.Errorf("%s: pod %s served %d requests (all: %v)", tr.Key(), p, served[p], served)
			}
		}
	}
	for _, r := range rows {
		if !seen[r] {
			t.Errorf("no %s trial in %s", r, out)
		}
	}
}

// checkClusterIP checks that a run on kind gave service svc a Kubernetes
// Service (its ClusterIP in the manifest) and that the baseline's client
// dialed it: kube-proxy, not meshbench, balanced the service.
func checkClusterIP(t *testing.T, out, svc string) {
	t.Helper()
	m := readManifest(t, out)
	ip, err := netip.ParseAddr(m.Platform.Services[svc])
	if err != nil {
		t.Fatalf("manifest services %v: no ClusterIP for %s: %v", m.Platform.Services, svc, err)
	}
	trials, err := results.ReadTrials(out)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tr := range trials {
		if tr.Key() == "none/baseline" {
			n++
			if want := "http://" + net.JoinHostPort(ip.String(), "8080") + "/"; tr.Target != want {
				t.Errorf("%s: target %s, want the ClusterIP's %s", tr.Key(), tr.Target, want)
			}
		}
	}
	if n == 0 {
		t.Errorf("no baseline trial in %s", out)
	}
}

// readManifest reads a run's manifest.
func readManifest(t *testing.T, out string) results.Manifest {
	t.Helper()
	var m results.Manifest
	data, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err == nil {
		err = json.Unmarshal(data, &m)
	}
	if err != nil {
		t.Fatalf("manifest of %s: %v", out, err)
	}
	return m
}

// checkPodOwners checks the manifest of a run on pods: node -> "owner on
// Kubernetes node".
func checkPodOwners(t *testing.T, out string, want map[string]string) {
	t.Helper()
	m := readManifest(t, out)
	for n, w := range want {
		p, ok := m.Platform.Pods[n]
		if got := p.Owner + " on " + p.Node; !ok || got != w {
			t.Errorf("node %s's pod: %q (%+v), want %q", n, got, p, w)
		}
	}
}

// checkDistinctPods checks that the nodes ran on pods of their own.
func checkDistinctPods(t *testing.T, out string, nodes ...string) {
	t.Helper()
	m := readManifest(t, out)
	seen := map[string]string{}
	for _, n := range nodes {
		pod := m.Platform.Pods[n].Pod
		if pod == "" || seen[pod] != "" {
			t.Errorf("node %s's pod is %q (nodes so far: %v)", n, pod, seen)
		}
		seen[pod] = n
	}
}

// clusterNodes are the node containers of a meshbench test cluster.
func clusterNodes(full string) []string {
	return []string{full + "-control-plane", full + "-worker", full + "-worker2"}
}

// initImages are the meshbench-init images in a node's containerd.
func initImages(node string) []string {
	out, _ := exec.Command("docker", "exec", node, "ctr", "--namespace=k8s.io", "images", "ls", "-q").Output()
	return initRE.FindAllString(string(out), -1)
}

// removeInitImages removes the meshbench-init images from a cluster's
// nodes, so that the next run (or check) finds none.
func removeInitImages(full string) {
	for _, n := range clusterNodes(full) {
		for _, img := range initImages(n) {
			_ = exec.Command("docker", "exec", n, "ctr", "--namespace=k8s.io", "images", "rm", "--sync", img).Run()
		}
	}
}

// killMidTrial starts a smoke run on cluster (args choose the platform),
// SIGKILLs it once its sidecar trial measures, checks that it left each
// of want, and returns its run id and what it wrote to stderr.
func killMidTrial(t *testing.T, cluster, out string, want []string, args ...string) (string, string) {
	t.Helper()
	cmd, stderr := startRun(t, append([]string{"smoke", "--duration", "10s", "--out", out}, args...)...)
	waitFor(t, 10*time.Minute, "the sidecar trial to be measuring", measuring(out))
	data, _ := os.ReadFile(stderr)
	id := runID(t, string(data))
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	left := kindLeftovers(t, cluster, id, out)
	for _, k := range want {
		if left[k] == "" {
			t.Errorf("SIGKILL left no %s (left %v): the test did not kill run %s mid-trial", k, left, id)
		}
	}
	return id, string(data)
}

// kubeRun runs on the named cluster as the kube platform, by its
// kubeconfig alone, as on any cluster: what the platform does not set up
// (the image on the nodes, a route from this host to the pods, the
// results directory on the nodes) is refused with exit 2 and nothing
// left; with all three (the test sets them up as a user would), the
// smoke scenario runs as on kind, and leaves only what was there.
func kubeRun(t *testing.T, name, share string) {
	t.Helper()
	full := "meshbench-" + name
	r := meshbench(t, time.Minute, "cluster", "kubeconfig", name)
	if r.code != 0 {
		t.Fatalf("kubeconfig: exit %d\n%s", r.code, r.stderr)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(r.stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	kube := func(out string, extra ...string) result {
		args := append([]string{"run", "smoke", "--platform", "kube", "--kubeconfig", kubeconfig, "--out", out}, extra...)
		return meshbench(t, 10*time.Minute, args...)
	}
	states := func() []string { m, _ := filepath.Glob("/run/meshbench/kind/*.json"); return m }
	namespaces := func() string {
		ns, _ := kubectlIn(t, full, "get", "namespaces", "-l", "meshbench.dev/run", "-o", "name")
		return strings.TrimSpace(ns)
	}
	refused := func(what, out, want string, extra ...string) {
		t.Helper()
		before := states()
		r := kube(out, extra...)
		if r.code != 2 || !strings.Contains(r.stderr, want) {
			t.Errorf("%s: exit %d, want 2 and %q\n%s", what, r.code, want, r.stderr)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s: the results directory %s was left", what, out)
		}
		if ns := namespaces(); ns != "" {
			t.Errorf("%s: namespaces left: %s", what, ns)
		}
		if after := states(); !slices.Equal(after, before) {
			t.Errorf("%s: state files before %v, after %v", what, before, after)
		}
	}
	refused("unknown context", filepath.Join(share, "kube-ctx"), `--context: the kubeconfig has no context "nope"`, "--context", "nope")

	// The image: the kind runs before removed what they loaded.
	removeInitImages(full)
	refused("no image", filepath.Join(share, "kube-noimage"), "the kube platform pulls and loads nothing")
	if r := meshbench(t, 5*time.Minute, "cluster", "build-image", "--cluster", name); r.code != 0 {
		t.Fatalf("build-image --cluster: exit %d\n%s", r.code, r.stderr)
	}

	// The routes: none to the pods (an unreachable route, so that
	// nothing leaves this host), then through each node, as kind runs
	// add them.
	out, err := kubectlIn(t, full, "get", "nodes", "-o", `jsonpath={range .items[*]}{.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}`)
	if err != nil {
		t.Fatalf("get nodes: %v\n%s", err, out)
	}
	var cidrs, vias []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			t.Fatalf("node pod range and address: %q", line)
		}
		cidrs, vias = append(cidrs, f[0]), append(vias, f[1])
	}
	delRoutes := func() {
		for _, c := range cidrs {
			_ = exec.Command("ip", "route", "del", c).Run()
		}
	}
	t.Cleanup(delRoutes)
	for _, c := range cidrs {
		if out, err := exec.Command("ip", "route", "replace", "unreachable", c).CombinedOutput(); err != nil {
			t.Fatalf("ip route replace unreachable %s: %v: %s", c, err, out)
		}
	}
	refused("no route to the pods", filepath.Join(share, "kube-noroute"), "this host does not reach node", "--modes", "baseline", "--duration", "1s")
	for i, c := range cidrs {
		if out, err := exec.Command("ip", "route", "replace", c, "via", vias[i]).CombinedOutput(); err != nil {
			t.Fatalf("ip route replace %s via %s: %v: %s", c, vias[i], err, out)
		}
	}
	// The results directory outside what the nodes mount.
	refused("results not shared", filepath.Join(t.TempDir(), "kube-elsewhere"), "does not share the results directory", "--modes", "baseline", "--duration", "1s")

	// A run SIGKILLed mid-trial leaves its namespace and control
	// directory; the next start (the full run below) removes them.
	killedOut := filepath.Join(share, "kube-killed")
	killed, killedLog := killMidTrial(t, full, killedOut, []string{"state file", "namespace", "control directory"}, "--platform", "kube", "--kubeconfig", kubeconfig)
	// Without a route to the cluster's service range, no Service: the
	// callers dial the pods.
	if want := "services: none created on kube: this host "; !strings.Contains(killedLog, want) {
		t.Errorf("the kube run without a route to the service range did not say %q:\n%s", want, killedLog)
	}
	// With one (through a node, as kind runs route each ClusterIP), the
	// services are Services, as on kind.
	svcRange, err := kubectlIn(t, full, "get", "servicecidrs", "-o", "jsonpath={.items[*].spec.cidrs[0]}")
	if err != nil || !strings.Contains(svcRange, "/") {
		t.Fatalf("the cluster's service range: %q, %v", svcRange, err)
	}
	svcRange = strings.Fields(svcRange)[0]
	if out, err := exec.Command("ip", "route", "replace", svcRange, "via", vias[0]).CombinedOutput(); err != nil {
		t.Fatalf("ip route replace %s via %s: %v: %s", svcRange, vias[0], err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "route", "del", svcRange).Run() })

	out = filepath.Join(share, "kube")
	r = kube(out)
	if r.code != 0 {
		t.Fatalf("run smoke --platform kube: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	id := runID(t, r.stderr)
	t.Logf("kube run %s:\n%s", id, r.stdout)
	if !strings.Contains(r.stderr, "removing leftovers of dead kube run "+killed) {
		t.Errorf("the kube run did not report removing run %s's leftovers:\n%s", killed, r.stderr)
	}
	// (The routes are the test's.)
	if left := kindLeftovers(t, full, killed, killedOut); len(left) > 0 && !(len(left) == 1 && left["routes"] != "") {
		t.Errorf("killed kube run %s left behind: %v", killed, left)
	}
	checkPodTrials(t, out)
	checkClusterIP(t, out, "server")
	var m results.Manifest
	if data, err := os.ReadFile(filepath.Join(out, "manifest.json")); err != nil || json.Unmarshal(data, &m) != nil {
		t.Fatalf("manifest: %v", err)
	}
	if p := m.Platform; p.Name != "kube" || !strings.HasPrefix(p.Kubernetes, "v1.34.") || len(p.KubeNodes) != 3 || p.Cluster != "kind-"+full {
		t.Errorf("manifest platform %+v: want kube, Kubernetes v1.34, 3 nodes, cluster kind-%s (the kubeconfig's name)", p, full)
	}
	var env struct{ Labels map[string]string }
	data, err := os.ReadFile(filepath.Join(out, "smp-environment.json"))
	if err == nil {
		err = json.Unmarshal(data, &env)
	}
	if err != nil || env.Labels["meshbench.dev/platform"] != "kube" || env.Labels["meshbench.dev/cluster"] != "kind-"+full {
		t.Errorf("SMPS environment does not name the kube platform and its cluster (%v):\n%s", err, data)
	}
	// What the run made is gone; what it found (the image, the routes)
	// is not its to remove.
	left := kindLeftovers(t, full, id, out)
	delete(left, "routes")
	if len(left) > 0 {
		t.Errorf("kube run %s left behind: %v", id, left)
	}
	if routes, _ := exec.Command("ip", "-4", "route", "show", cidrs[0]).Output(); !strings.Contains(string(routes), "via "+vias[0]) {
		t.Errorf("the kube run removed the route it found to %s: %q", cidrs[0], routes)
	}
	if routes, _ := exec.Command("ip", "-4", "route", "show", svcRange).Output(); !strings.Contains(string(routes), "via "+vias[0]) {
		t.Errorf("the kube run removed the route it found to the service range %s: %q", svcRange, routes)
	}
	if len(initImages(full+"-worker2")) == 0 {
		t.Errorf("the kube run removed the image it found on the nodes")
	}
	delRoutes()
	_ = exec.Command("ip", "route", "del", svcRange).Run()
	kubeOnNode(t, full, share)
}

// kubeOnNode runs meshbench on the cluster's control-plane node with the
// kube platform, as on a host that is one of its nodes (k3s, kubeadm):
// the node's ip route gives no node as the way to the service range (the
// Docker network's gateway), yet its own kube-proxy translates the
// ClusterIPs it dials, so the services are Services; the run leaves
// nothing. The node has neither debootstrap nor the cache: the pods'
// image is named from a copy of the cached reference root filesystem in
// the shared directory (the image is on the nodes: kubeRun loaded it).
func kubeOnNode(t *testing.T, full, share string) {
	t.Helper()
	stages, _ := filepath.Glob(filepath.Join(nodeimage.DefaultCacheDir(), "build", "reference-*", ".meshbench-done"))
	if len(stages) != 1 {
		t.Fatalf("the cached reference root filesystem: %v, want one (make test builds it)", stages)
	}
	stage := filepath.Dir(stages[0])
	cache := filepath.Join(share, "node-cache")
	copyStage := filepath.Join(cache, "build", filepath.Base(stage))
	if err := os.MkdirAll(filepath.Join(copyStage, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(share, "node-bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	// -p: meshbench runs a meshbench-proxy beside it only if it is as new.
	for _, cp := range [][]string{
		{filepath.Join(stage, ".meshbench-done"), filepath.Join(stage, "rootfs.tar"), copyStage},
		{meshbenchBin, filepath.Join(filepath.Dir(meshbenchBin), "meshbench-proxy"), filepath.Join(filepath.Dir(meshbenchBin), "meshbench-pod-process"), bin},
	} {
		if out, err := exec.Command("cp", append([]string{"-p"}, cp...)...).CombinedOutput(); err != nil {
			t.Fatalf("cp %v: %v: %s", cp, err, out)
		}
	}
	out := filepath.Join(share, "kube-node")
	r := runArgv(t, 10*time.Minute, nil, []string{"docker", "exec", full + "-control-plane", filepath.Join(bin, "meshbench"),
		"run", "smoke", "--platform", "kube", "--kubeconfig", "/etc/kubernetes/admin.conf", "--cache-dir", cache,
		"--duration", "2s", "--out", out})
	if r.code != 0 {
		t.Fatalf("run smoke --platform kube on node %s-control-plane: exit %d\nstdout:\n%s\nstderr:\n%s", full, r.code, r.stdout, r.stderr)
	}
	if want := "services: this host is the cluster's node " + full + "-control-plane"; !strings.Contains(r.stderr, want) {
		t.Errorf("the run on a node did not say %q:\n%s", want, r.stderr)
	}
	checkPodTrials(t, out)
	checkClusterIP(t, out, "server")
	if ns, _ := kubectlIn(t, full, "get", "namespaces", "-l", "meshbench.dev/run", "-o", "name"); strings.TrimSpace(ns) != "" {
		t.Errorf("the run on a node left namespaces: %s", ns)
	}
}
