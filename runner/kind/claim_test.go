package kind

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/meshbench/meshbench/runner"
)

// fakePlatform is a platform whose API server is client-go's fake, in
// namespace "ns", of run "r1", with the replicated service server on
// three nodes.
func fakePlatform(objs ...runtime.Object) *platform {
	return &platform{
		o: PlatformOptions{RunID: "r1", Replicas: map[string][]string{
			"server": {"server", "server-1", "server-2"},
		}},
		client: &Client{cs: fake.NewClientset(objs...)},
		ns:     "ns",
	}
}

func fakePod(name string, labels ...string) *corev1.Pod {
	l := map[string]string{RunLabel: "r1"}
	for i := 0; i+1 < len(labels); i += 2 {
		l[labels[i]] = labels[i+1]
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: l}}
}

// A replicated service's node claims one of its Deployment's pods no
// other node holds, keeps it on the next call, and never takes a pod
// of another run or one only the Service's label names.
func TestPodOfClaims(t *testing.T) {
	ctx := context.Background()
	p := fakePlatform(
		fakePod("server-7d9-b", ReplicasLabel, "server"),
		fakePod("server-7d9-a", ReplicasLabel, "server"),
		fakePod("server-7d9-0", AppLabel, "server"), // not the Deployment's
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "server-7d9-00", Namespace: "ns",
			Labels: map[string]string{RunLabel: "other", ReplicasLabel: "server"}}},
		fakePod("client", NodeLabel, "client"),
	)
	claimed := map[string]string{} // pod by node
	for _, n := range []string{"server-1", "server", "server-1"} {
		pod, err := p.podOf(ctx, n)
		if err != nil {
			t.Fatalf("podOf(%s): %v", n, err)
		}
		if got := pod.Labels[NodeLabel]; got != dnsLabel(n) {
			t.Errorf("podOf(%s) gave pod %s labelled node %q", n, pod.Name, got)
		}
		if c, ok := claimed[n]; ok && c != pod.Name {
			t.Errorf("podOf(%s) took %s, then %s", n, c, pod.Name)
		}
		claimed[n] = pod.Name
	}
	// By name: the first free pod first.
	if claimed["server-1"] != "server-7d9-a" || claimed["server"] != "server-7d9-b" {
		t.Errorf("claims %v, want server-1 on server-7d9-a and server on server-7d9-b", claimed)
	}
	// None left for the third node; the others' pods untouched.
	if pod, err := p.podOf(ctx, "server-2"); !errors.Is(err, errNoPod) {
		t.Errorf("podOf(server-2) with no free pod: %v, %v; want errNoPod", pod, err)
	}
	for _, name := range []string{"server-7d9-0", "server-7d9-00"} {
		pod, err := p.client.cs.CoreV1().Pods("ns").Get(ctx, name, metav1.GetOptions{})
		if err != nil || pod.Labels[NodeLabel] != "" {
			t.Errorf("pod %s: %v, labels %v; want it unclaimed", name, err, pod.Labels)
		}
	}
	// A node of its own finds its pod by its label, and only that.
	if pod, err := p.podOf(ctx, "client"); err != nil || pod.Name != "client" {
		t.Errorf("podOf(client): %v, %v", pod, err)
	}
	if _, err := p.podOf(ctx, "sidecar-less"); !errors.Is(err, errNoPod) {
		t.Errorf("podOf of a node with no pod: %v, want errNoPod", err)
	}
}

// A controller's FailedCreate event fails the node whose pod it makes:
// a DaemonSet's by its name, a Deployment's through its ReplicaSet.
func TestCreateFailed(t *testing.T) {
	ev := func(kind, name, reason, msg string) *corev1.Event {
		return &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: name + "." + reason, Namespace: "ns"},
			InvolvedObject: corev1.ObjectReference{Kind: kind, Name: name, Namespace: "ns"},
			Type:           corev1.EventTypeWarning, Reason: reason, Message: msg,
		}
	}
	p := fakePlatform(
		ev("ReplicaSet", "server-5f6c", "FailedCreate", `pods "server-5f6c-x" is forbidden: exceeded quota`),
		ev("DaemonSet", "node-b", "FailedCreate", "no nodes match"),
		ev("ReplicaSet", "client-extra-9f8d", "FailedCreate", "node client-extra's Deployment's"),
		ev("Pod", "client", "FailedScheduling", "0/3 nodes are available"),
	)
	ctx := context.Background()
	for _, c := range []struct{ node, want string }{
		{"server-2", "ReplicaSet server-5f6c cannot create the pod of node server-2: pods \"server-5f6c-x\" is forbidden: exceeded quota"},
		{"node-b", "DaemonSet node-b cannot create the pod of node node-b: no nodes match"},
		{"client", ""},
		{"client-extra", "ReplicaSet client-extra-9f8d cannot create the pod of node client-extra"},
	} {
		err := p.createFailed(ctx, c.node)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("createFailed(%s): %v, want %q", c.node, err, c.want)
		}
	}
}

// A claim is conditional on the pod's version: one that another node
// changed in between fails (and the node's next poll claims another).
func TestPodOfClaimConflict(t *testing.T) {
	ctx := context.Background()
	p := fakePlatform(fakePod("server-7d9-a", ReplicasLabel, "server"))
	cs := p.client.cs.(*fake.Clientset)
	conflicts := 0
	cs.PrependReactor("patch", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		patch := string(a.(k8stesting.PatchAction).GetPatch())
		if !strings.Contains(patch, `"resourceVersion"`) {
			t.Errorf("claim patch %s is not conditional on the pod's version", patch)
		}
		if conflicts++; conflicts == 1 {
			return true, nil, apierrors.NewConflict(corev1.Resource("pods"), "server-7d9-a", errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	if pod, err := p.podOf(ctx, "server-1"); !apierrors.IsConflict(err) || pod != nil {
		t.Errorf("podOf during another's claim: %v, %v; want the conflict", pod, err)
	}
	if pod, err := p.podOf(ctx, "server-1"); err != nil || pod.Labels[NodeLabel] != "server-1" {
		t.Errorf("podOf on the next poll: %v, %v", pod, err)
	}
}

// The ClusterIPs are taken for reached from this host when it is one of
// the cluster's nodes (its own kube-proxy translates them), and not when
// the nodes are elsewhere and the service range is not routed through
// one: the real `ip route get` and this host's real addresses, against
// the fake's nodes and ServiceCIDR.
func TestUnroutedServicesOnANode(t *testing.T) {
	local, err := hostAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var here string
	for _, a := range local {
		if a.Is4() && !a.IsLoopback() {
			here = a.String()
			break
		}
	}
	if here == "" {
		t.Skipf("this host has no IPv4 address but loopback's (%v) to stand for a node's", local)
	}
	cidr := &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"},
		Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.254.252.0/22"}}}
	node := func(addr string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n-" + addr},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: addr}}}}
	}
	// 198.51.100.0/24 is documentation's (TEST-NET-2): a node there is
	// not the gateway of this host's route to 10.254.252.0/22 (made
	// sure of).
	if out, _ := runIP(context.Background(), "-4", "route", "get", "10.254.252.1"); strings.Contains(out, "via 198.51.100.7 ") {
		t.Fatalf("this host routes 10.254.252.0/22 through the test's node address: %s", out)
	}
	elsewhere := fakePlatform(cidr, node("198.51.100.7"))
	elsewhere.o.Log = nopLogger{}
	if why := elsewhere.unroutedServices(context.Background()); why == "" {
		t.Errorf("a cluster whose only node (198.51.100.7) is elsewhere and whose service range this host does not route through it: ClusterIPs taken for reached")
	}
	// On a node, the API server's ClusterIP (here: a listener of this
	// test's at the host's own address, as the fake's Service says)
	// must take a connection.
	l, err := net.Listen("tcp", net.JoinHostPort(here, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	apiServer := func(port int) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: metav1.NamespaceDefault},
			Spec: corev1.ServiceSpec{ClusterIP: here, Ports: []corev1.ServicePort{{Port: int32(port)}}}}
	}
	onNode := fakePlatform(cidr, node("198.51.100.7"), node(here), apiServer(port))
	onNode.o.Log = nopLogger{}
	if why := onNode.unroutedServices(context.Background()); why != "" {
		t.Errorf("this host is the cluster's node n-%s, yet: %s", here, why)
	}
	// The same address, but the API server's ClusterIP takes no
	// connection (another host's address, behind NAT or a VPN): the
	// routes decide, and do not go through a node.
	closed, err := net.Listen("tcp", net.JoinHostPort(here, "0"))
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	var logged []string
	lookalike := fakePlatform(cidr, node("198.51.100.7"), node(here), apiServer(closedPort))
	lookalike.o.Log = logFunc(func(format string, args ...any) { logged = append(logged, fmt.Sprintf(format, args...)) })
	if why := lookalike.unroutedServices(context.Background()); why == "" {
		t.Errorf("this host has node n-%s's address but does not reach the API server's ClusterIP, yet its ClusterIPs are taken for reached", here)
	}
	if len(logged) != 1 || !strings.Contains(logged[0], "a connection to the API server's ClusterIP") {
		t.Errorf("the run does not say why the node's address was not enough: %q", logged)
	}
}

// A process the API server cannot add to its node's pod because the pod
// would be too large for its store (the answer measured on kind: 500,
// "etcdserver: request is too large") fails saying why and what to do;
// and a pod nearing that size is warned of once.
func TestPodTooLarge(t *testing.T) {
	pod := fakePod("client", NodeLabel, "client")
	p := fakePlatform(pod)
	var logged []string
	p.o.Log = logFunc(func(format string, args ...any) { logged = append(logged, fmt.Sprintf(format, args...)) })
	p.ctl = t.TempDir()
	p.pods, p.procs = map[string]*corev1.Pod{"client": pod}, map[string]*process{}
	cs := p.client.cs.(*fake.Clientset)
	cs.PrependReactor("update", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "ephemeralcontainers" {
			return false, nil, nil
		}
		return true, nil, apierrors.NewInternalError(errors.New("etcdserver: request is too large"))
	})
	_, err := p.StartProcess(context.Background(), "client", runner.ProcessSpec{Name: "client-sidecar"})
	if err == nil || !strings.Contains(err.Error(), "request is too large") || !strings.Contains(err.Error(), "split the run") {
		t.Errorf("StartProcess on a pod too large: %v, want etcd's error and what to do", err)
	}
	if len(p.procs) != 0 {
		t.Errorf("the process that did not start is still registered: %v", p.procs)
	}

	big := pod.DeepCopy()
	for i := range 800 {
		big.Spec.EphemeralContainers = append(big.Spec.EphemeralContainers, corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: fmt.Sprintf("p-%d", i), Image: "meshbench.local/meshbench-init:x",
				Args: []string{strings.Repeat("a", 1400)}}})
	}
	p.watchSize("client", pod)
	p.watchSize("client", big)
	p.watchSize("client", big)
	if len(logged) != 1 || !strings.Contains(logged[0], "800 ephemeral containers") {
		t.Errorf("warnings for a small pod, then twice for one of %d KiB: %q, want one", big.Size()>>10, logged)
	}
}

type logFunc func(format string, args ...any)

func (f logFunc) Logf(format string, args ...any) { f(format, args...) }
