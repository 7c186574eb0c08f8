package kind

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func node(name, role string) corev1.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if role != "" {
		n.Labels[RoleLabel] = role
	}
	return n
}

// Pods go by role only where both roles have nodes; a pod whose image is
// not on its node says so.
func TestKubePlacementAndImage(t *testing.T) {
	cp, lg, sut := node("cp", ""), node("lg", RoleLoadGen), node("sut", RoleSUT)
	if !byRole([]corev1.Node{cp, lg, sut}) {
		t.Error("both roles labelled: not placed by role")
	}
	if byRole([]corev1.Node{cp, lg}) || byRole([]corev1.Node{cp}) {
		t.Error("a role without nodes: placed by role")
	}
	pod := &corev1.Pod{}
	pod.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "share-check",
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: "not present"}}}}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "node",
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}}
	if got := imageMissing(pod); got != "not present" {
		t.Errorf("imageMissing = %q, want the kubelet's message", got)
	}
	pod.Status.InitContainerStatuses = nil
	if got := imageMissing(pod); got != "" {
		t.Errorf("imageMissing = %q for a pod initializing", got)
	}
}

// The kubeconfig as kubectl takes it: a file, its current context or a
// named one, pinned down with its server; a missing file, an empty one,
// an unknown context, none current are errors that say which; a context
// that names another server by the time of the client is refused.
func TestResolveKube(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	data := `apiVersion: v1
kind: Config
clusters:
- name: one
  cluster: {server: "https://127.0.0.1:1"}
- name: two
  cluster: {server: "https://127.0.0.1:2"}
contexts:
- name: a
  context: {cluster: one, user: u}
- name: b
  context: {cluster: two, user: u}
current-context: a
users:
- name: u
  user: {token: t}
`
	write := func(path, data string) {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(cfg, data)
	if got, err := ResolveKube(KubeTarget{Kubeconfig: cfg}); err != nil || got != (KubeTarget{Kubeconfig: cfg, Context: "a", Cluster: "one", Server: "https://127.0.0.1:1"}) {
		t.Errorf("current context: %+v, %v; want context a, cluster one", got, err)
	}
	b, err := ResolveKube(KubeTarget{Kubeconfig: cfg, Context: "b"})
	if err != nil || b.Cluster != "two" || b.Server != "https://127.0.0.1:2" {
		t.Errorf("context b: %+v, %v; want cluster two", b, err)
	}
	if _, err := KubeClient(b); err != nil {
		t.Errorf("client of context b: %v", err)
	}
	write(cfg, strings.Replace(data, "127.0.0.1:2", "127.0.0.1:3", 1))
	if _, err := KubeClient(b); err == nil || !strings.Contains(err.Error(), "context b now names the API server https://127.0.0.1:3, not https://127.0.0.1:2") {
		t.Errorf("client of context b after its server changed: %v", err)
	}
	empty, nocur := filepath.Join(dir, "empty"), filepath.Join(dir, "nocurrent")
	write(empty, "apiVersion: v1\nkind: Config\n")
	write(nocur, strings.Replace(data, "current-context: a", "", 1))
	for _, c := range []struct {
		t    KubeTarget
		want string
	}{
		{KubeTarget{Kubeconfig: cfg, Context: "c"}, `no context "c" (it has: a, b)`},
		{KubeTarget{Kubeconfig: filepath.Join(dir, "nosuch")}, "no such file"},
		{KubeTarget{Kubeconfig: empty}, "no kubeconfig context in " + empty},
		{KubeTarget{Kubeconfig: nocur}, "no current context: name one with --context (it has: a, b)"},
	} {
		if _, err := ResolveKube(c.t); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error saying %q", c.t, err, c.want)
		}
	}
}

// A refused connection means the packets reached the pod's kernel (here
// loopback's, port 1); the integration test (cluster_test.go) has a
// cluster this host is not routed to.
func TestCheckReachRefused(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Status: corev1.PodStatus{PodIP: "127.0.0.1"}}
	if err := checkReach(context.Background(), "n", pod); err != nil {
		t.Errorf("loopback, port 1: %v", err)
	}
}

// A dead kind run's leftovers stay while a live run on its cluster uses
// them: a kind run by what it lists, a kube run (which lists nothing, and
// names the cluster as its kubeconfig does) whatever they are.
func TestUsedByLiveRuns(t *testing.T) {
	dead := kindRecord{RunID: "a", Cluster: "meshbench-x", Images: []string{"img"}}
	uses := func(o kindRecord) bool { return slices.Contains(o.Uses, "img") }
	for _, c := range []struct {
		name   string
		others []kindRecord
		want   bool
	}{
		{"none", nil, false},
		{"a kind run using it", []kindRecord{{Cluster: "meshbench-x", Uses: []string{"img"}}}, true},
		{"a kind run using another image", []kindRecord{{Cluster: "meshbench-x", Uses: []string{"other"}}}, false},
		{"a kind run on another cluster", []kindRecord{{Cluster: "meshbench-y", Uses: []string{"img"}}}, false},
		{"a kube run on the cluster", []kindRecord{{Cluster: "kind-meshbench-x", Kube: &KubeTarget{}}}, true},
		{"a kube run elsewhere", []kindRecord{{Cluster: "prod", Kube: &KubeTarget{}}}, false},
	} {
		if got := usedBy(dead, c.others, uses); got != c.want {
			t.Errorf("%s: used %v, want %v", c.name, got, c.want)
		}
	}
}

// TestNodePodTogether: a pod on a shared node must run on the Kubernetes
// node of the shared node's pod; other pods are placed by role alone.
func TestNodePodTogether(t *testing.T) {
	p := &platform{o: PlatformOptions{Together: map[string]string{"backend-1": "shared"}, Share: "/tmp/x"}, ns: "ns"}
	if a := p.nodePod("shared").Spec.Affinity; a != nil {
		t.Errorf("the shared node's pod has affinity %+v", a)
	}
	a := p.nodePod("backend-1").Spec.Affinity
	if a == nil || a.PodAffinity == nil || len(a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 1 {
		t.Fatalf("backend-1's affinity %+v", a)
	}
	term := a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0]
	if term.TopologyKey != corev1.LabelHostname || term.LabelSelector.MatchLabels[NodeLabel] != "shared" {
		t.Errorf("backend-1's affinity term %+v", term)
	}
	if got := p.nodePod("shared").Labels[NodeLabel]; got != "shared" {
		t.Errorf("the shared node's pod is labelled %q", got)
	}
	// The control plane's node goes to the load generator's worker, as
	// the load generator does.
	p.o.LoadGen = []string{"client"}
	for n, want := range map[string]string{"control-plane": RoleLoadGen, "client": RoleLoadGen, "backend-1": RoleSUT} {
		if got := p.nodePod(n).Spec.NodeSelector[RoleLabel]; got != want {
			t.Errorf("%s's pod goes to role %q, want %q", n, got, want)
		}
	}
}

// A shared node's DaemonSet is pinned to a node of the system under
// test, the shared nodes taking them in turn; without role labels, to a
// node that takes pods, and to the control plane's only when no other
// does; none at all is an error that says why.
func TestSharedNodeHosts(t *testing.T) {
	cp := node("cp", "")
	cp.Labels["node-role.kubernetes.io/control-plane"] = ""
	tainted := node("tainted", "")
	tainted.Spec.Taints = []corev1.Taint{{Key: "x", Effect: corev1.TaintEffectNoSchedule}}
	taintedSUT := node("tainted-sut", RoleSUT)
	taintedSUT.Spec.Taints = []corev1.Taint{{Key: "x", Effect: corev1.TaintEffectNoExecute}}
	cordoned := node("cordoned", "")
	cordoned.Spec.Unschedulable = true
	for _, c := range []struct {
		name  string
		nodes []corev1.Node
		roles bool
		want  []string
	}{
		{"by role", []corev1.Node{cp, node("lg", RoleLoadGen), node("sut2", RoleSUT), node("sut1", RoleSUT), taintedSUT}, true, []string{"sut1", "sut2"}},
		{"no roles", []corev1.Node{cp, tainted, cordoned, node("w2", ""), node("w1", "")}, false, []string{"w1", "w2"}},
		{"one node", []corev1.Node{cp, tainted}, false, []string{"cp"}},
		{"none takes pods", []corev1.Node{tainted, cordoned}, false, nil},
	} {
		if got := sutHosts(c.nodes, c.roles); !slices.Equal(got, c.want) {
			t.Errorf("%s: hosts %v, want %v", c.name, got, c.want)
		}
	}
	p := &platform{o: PlatformOptions{Together: map[string]string{"a": "zone-b", "b": "zone-a", "c": "zone-c", "d": "zone-a"}},
		hosts: []string{"sut1", "sut2"}}
	for n, want := range map[string]string{"zone-a": "sut1", "zone-b": "sut2", "zone-c": "sut1"} {
		if got, err := p.hostOf(n); err != nil || got != want {
			t.Errorf("hostOf(%s) = %q, %v; want %s", n, got, err, want)
		}
	}
	p.hosts = nil
	if _, err := p.hostOf("zone-a"); err == nil || !strings.Contains(err.Error(), "no Kubernetes node for its DaemonSet") {
		t.Errorf("no hosts: %v", err)
	}
	if !p.shared("zone-a") || p.shared("a") {
		t.Error("shared: want the nodes others share, not theirs")
	}
}

// A pod waits until its holder is ready (a controller's pod whose holder
// keeps failing is Running all the same), and the reason a pod waits
// names its init containers and their last failure too.
func TestHolderReadyAndWhy(t *testing.T) {
	pod := &corev1.Pod{}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "node", Ready: false,
		State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2, Reason: "Error"}}}}
	pod.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "share-check",
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}}
	if holderReady(pod) {
		t.Error("a holder in CrashLoopBackOff is ready")
	}
	why := podWhy(pod)
	for _, want := range []string{"share-check: PodInitializing", "node: CrashLoopBackOff", "node: last exit code 2 (Error)"} {
		if !strings.Contains(why, want) {
			t.Errorf("podWhy = %q, want %q in it", why, want)
		}
	}
	pod.Status.ContainerStatuses[0].Ready = true
	if !holderReady(pod) {
		t.Error("a ready holder is not ready")
	}
}

// TestServiceName: a service's Kubernetes Service is named for it, and
// prefixed where its name does not start with a letter (DNS-1035).
func TestServiceName(t *testing.T) {
	for in, want := range map[string]string{"server": "server", "backend-1": "backend-1", "1st": "svc-1st", "9-a": "svc-9-a"} {
		if got := serviceName(in); got != want {
			t.Errorf("serviceName(%q) = %q, want %q", in, got, want)
		}
	}
}

// A cluster's service range is taken for reached from this host only
// when the route to it goes through one of the cluster's nodes.
func TestRouteWhy(t *testing.T) {
	r := netip.MustParsePrefix("10.96.0.0/16")
	nodes := []string{"172.18.0.2", "172.18.0.3"}
	for _, c := range []struct {
		name, route, want string
	}{
		{"through a node", `[{"dst":"10.96.0.1","gateway":"172.18.0.3","dev":"br-1","prefsrc":"172.18.0.1","flags":[],"uid":0,"cache":[]}]`, ""},
		{"the default route", `[{"dst":"10.96.0.1","gateway":"192.0.2.1","dev":"eth0","prefsrc":"192.0.2.2"}]`, "through 192.0.2.1, which is none of its nodes (172.18.0.2, 172.18.0.3)"},
		{"a link", `[{"dst":"10.96.0.1","dev":"wg0","prefsrc":"10.96.0.9"}]`, "to its link wg0, not through one of its nodes"},
		{"none", `[]`, "ip route get in 10.96.0.0/16"},
		{"not JSON", `oops`, "ip route get in 10.96.0.0/16"},
	} {
		got := routeWhy(r, []byte(c.route), nodes)
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// This host is taken for a node (whose kube-proxy translates the
// ClusterIPs it dials) only when one of its addresses is a node's
// InternalIP; an ExternalIP, a loopback address or another node's
// address does not make it one.
func TestNodeOf(t *testing.T) {
	withAddrs := func(name string, addrs ...corev1.NodeAddress) corev1.Node {
		return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Addresses: addrs}}
	}
	internal := func(a string) corev1.NodeAddress { return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a} }
	nodes := []corev1.Node{
		withAddrs("cp", internal("172.18.0.2"), corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "192.0.2.2"}),
		withAddrs("worker", internal("172.18.0.3"), internal("fd00::3")),
		withAddrs("odd", internal("127.0.0.1")),
		withAddrs("mapped", internal("::ffff:172.18.0.9")),
	}
	for _, c := range []struct {
		name  string
		local []string
		want  string
	}{
		{"a node's InternalIP", []string{"127.0.0.1", "10.0.0.1", "172.18.0.3"}, "worker"},
		{"its IPv6 InternalIP", []string{"fd00::3"}, "worker"},
		{"a node's IPv4-mapped InternalIP", []string{"172.18.0.9"}, "mapped"},
		{"an ExternalIP only", []string{"192.0.2.2"}, ""},
		{"loopback only", []string{"127.0.0.1", "::1"}, ""},
		{"none of them", []string{"172.18.0.1"}, ""},
	} {
		var local []netip.Addr
		for _, a := range c.local {
			local = append(local, netip.MustParseAddr(a).Unmap())
		}
		if got := nodeOf(nodes, local); got != c.want {
			t.Errorf("%s: nodeOf = %q, want %q", c.name, got, c.want)
		}
	}
}

// Each cluster's pod and service ranges are its own (by name), inside
// meshbench's blocks, so that routes to clusters side by side do not
// clash; and the kind configuration carries them.
func TestClusterSubnets(t *testing.T) {
	pods, svcs := netip.MustParsePrefix("10.128.0.0/10"), netip.MustParsePrefix("10.112.0.0/12")
	seen := map[string]string{}
	for _, name := range []string{"meshbench-a", "meshbench-b", "meshbench-kd", "meshbench-kl4", "meshbench-dev"} {
		p, err := netip.ParsePrefix(PodSubnet(name))
		if err != nil || p.Bits() != 20 || !pods.Contains(p.Addr()) || p.Masked() != p {
			t.Errorf("%s: pod range %s (%v)", name, PodSubnet(name), err)
		}
		s, err := netip.ParsePrefix(ServiceSubnet(name))
		if err != nil || s.Bits() != 22 || !svcs.Contains(s.Addr()) || s.Masked() != s {
			t.Errorf("%s: service range %s (%v)", name, ServiceSubnet(name), err)
		}
		if other, ok := seen[s.String()]; ok {
			t.Errorf("%s and %s share the service range %s", name, other, s)
		}
		seen[s.String()] = name
		cfg := Config(ClusterOptions{Name: strings.TrimPrefix(name, Prefix)})
		if cfg.Networking.PodSubnet != PodSubnet(name) || cfg.Networking.ServiceSubnet != ServiceSubnet(name) {
			t.Errorf("%s: configured ranges %s, %s", name, cfg.Networking.PodSubnet, cfg.Networking.ServiceSubnet)
		}
	}
}

// collidingName is a kind cluster name, with prefix, other than
// fullName whose hash would give it fullName's ranges.
func collidingName(t *testing.T, prefix, fullName string) string {
	for i := range 100000 {
		if c := fmt.Sprintf("%sx%d", prefix, i); c != fullName && subnetIndex(c) == subnetIndex(fullName) {
			return c
		}
	}
	t.Fatalf("no name of 100000 has the ranges of %s", fullName)
	return ""
}

// A new cluster whose name gives it another meshbench cluster's ranges is
// refused, naming that cluster; the run's own cluster name steps past it.
func TestRangesFree(t *testing.T) {
	a := FullName("a")
	b := collidingName(t, Prefix, a)
	if err := rangesFree(a, []string{"kind", a, FullName("zz")}); err != nil {
		t.Errorf("ranges of %s with no other cluster of them: %v", a, err)
	}
	err := rangesFree(a, []string{"kind", b})
	if !errors.Is(err, ErrRangesTaken) || !strings.Contains(err.Error(), b) || !strings.Contains(err.Error(), PodSubnet(a)) {
		t.Errorf("ranges of %s beside %s: %v, want ErrRangesTaken naming %s and %s", a, b, err, b, PodSubnet(a))
	}
	// Not meshbench's: kind's own clusters keep kind's ranges.
	if err := rangesFree(a, []string{collidingName(t, "", a)}); err != nil {
		t.Errorf("beside a kind cluster not meshbench's: %v", err)
	}
}

func TestLastAddr(t *testing.T) {
	for r, want := range map[string]string{"10.96.0.0/16": "10.96.255.255", "10.112.4.0/22": "10.112.7.255", "10.0.0.7/32": "10.0.0.7", "10.1.2.3/8": "10.255.255.255"} {
		if got := lastAddr(netip.MustParsePrefix(r)).String(); got != want {
			t.Errorf("lastAddr(%s) = %s, want %s", r, got, want)
		}
	}
}
