package kind

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/runner"
	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/scenarios"
)

// RunLabel carries the run id on every object the kind platform creates.
const RunLabel = "meshbench.dev/run"

// PlatformOptions configure the kind platform.
type PlatformOptions struct {
	// RunID names every object; 6 lowercase hex digits.
	RunID string
	// Cluster is the meshbench cluster to run on (kind).
	Cluster string
	// Kube, when set, makes this the kube platform, on the cluster it
	// names (then Cluster, Create and Keep are unused).
	Kube *KubeTarget
	// Create, when set, creates the cluster at Up (its name is Cluster)
	// and deletes it at Down unless Keep.
	Create *ClusterOptions
	Keep   bool
	// Image is the image every container runs (meshbench's binary and
	// the reference proxies: the meshbench-init image); WriteImages
	// writes an archive holding it, loaded into nodes that lack it.
	Image       string
	WriteImages func(io.Writer) error
	// Proxy says Image holds meshbench-proxy (images.ProxyPath), which
	// then runs the processes whose Command is meshes.ProxyCommand; else
	// the meshbench binary's proxy subcommand runs them.
	Proxy bool
	// Wrapper says Image holds meshbench-pod-process (images.WrapperPath),
	// which then wraps every container's process; else the meshbench
	// binary's pod-process subcommand does.
	Wrapper bool
	// Share is an absolute directory every node mounts at the same path:
	// the run's results directory, where the pods read their
	// configuration and write their results. A cluster the platform
	// creates mounts it; for a named one, the caller checks it first
	// (CheckShared), before anything starts; on kube, each node pod
	// checks it as it starts.
	Share string
	// LoadGen are the nodes (of Up's names) placed on the load
	// generator's worker; the others go to the system under test's.
	LoadGen []string
	// Together maps nodes (of Up's names) to the node whose Kubernetes
	// node they must run on: pods on a node they share, which is a pod
	// of its own (where the per-node proxies run).
	Together map[string]string
	// Replicas maps each replicated service to its pods' nodes (of Up's
	// names), first the one named as the service: they are the pods of
	// one Deployment, named as that first node, which the platform
	// gives to the nodes as they come (a pod is a node's once labelled
	// with it).
	Replicas map[string][]string
	// StateDir holds the run state files (a kind/ directory in it).
	StateDir string
	Log      Logger
}

// platform is the kind platform: every meshbench node is a pod (its
// network namespace), created at Up on the worker of its role and kept
// for the run; each process of a unit is an ephemeral container added to
// its node's pod (the Kubernetes API for adding a process to a running
// pod, as kubectl debug does), or, in a deployment with sidecars, a
// container of a pod made for it (Prepare), started through meshbench's
// process wrapper (package podproc), which the platform stops through a
// control file in the shared directory. Pods share their process
// namespace, so a unit's processes see each other as they do on the
// local platform.
type platform struct {
	o      PlatformOptions
	st     *kindState
	client *Client
	ns     string
	ctl    string // the control directory, in Share

	ctx    context.Context // the platform's lifetime, for watches and logs
	cancel context.CancelFunc

	// follows counts the goroutines that read processes' output and the
	// pod watch: Down waits for them.
	follows sync.WaitGroup

	// roles says the cluster's nodes carry both meshbench role labels
	// (which then place the pods).
	roles bool

	// hosts are the Kubernetes nodes a shared node's DaemonSet may be
	// pinned to (the system under test's), in name order.
	hosts []string

	mu     sync.Mutex
	pods   map[string]*corev1.Pod // by meshbench node name
	placed map[string]results.KubePod
	// services are the services' ClusterIPs (Expose), by name.
	services map[string]string
	// backends are the nodes of each service's pods, by name.
	backends map[string][]string
	procs    map[string]*process // by pod/container
	// made are the pods made for the deployment under way (Prepare),
	// which stand in for their nodes' pods, by node.
	made map[string]*madePod
	// noSidecars says the cluster has no sidecar containers: no pods
	// are made for deployments.
	noSidecars bool
	// agents are the fault agents of the trial under way, by node.
	agents map[string]*agent
	// sizeWarned are the nodes whose pods' size the run warned of.
	sizeWarned map[string]bool
	seq        int
	version    string
	nodes      []results.KubeNode
	down       bool
}

var _ runner.Platform = (*platform)(nil)
var _ runner.UsageMeter = (*platform)(nil)

// NewPlatform checks the options and removes what dead kind runs left
// behind. Nothing of this run exists until Up.
func NewPlatform(ctx context.Context, o PlatformOptions) (runner.Platform, error) {
	if o.Log == nil {
		o.Log = nopLogger{}
	}
	if !filepath.IsAbs(o.Share) {
		return nil, fmt.Errorf("kind platform: the shared directory %q is not absolute", o.Share)
	}
	if err := CleanupRuns(ctx, o.StateDir, o.Log); err != nil {
		return nil, fmt.Errorf("remove leftovers of dead kind runs: %w", err)
	}
	p := &platform{o: o, ns: Prefix + o.RunID, ctl: filepath.Join(o.Share, ".meshbench-"+o.RunID),
		pods: map[string]*corev1.Pod{}, placed: map[string]results.KubePod{}, procs: map[string]*process{},
		services: map[string]string{}, backends: map[string][]string{}}
	if o.Kube != nil && o.Kube.Server == "" {
		t, err := ResolveKube(*o.Kube)
		if err != nil {
			return nil, err
		}
		p.o.Kube = &t
	}
	p.ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	return p, nil
}

// kube says this is the kube platform.
func (p *platform) kube() bool { return p.o.Kube != nil }

// clusterName is the cluster's name in results and records.
func (p *platform) clusterName() string {
	if p.kube() {
		return p.o.Kube.Cluster
	}
	return FullName(p.o.Cluster)
}

func (p *platform) Describe() results.Platform {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.kube() {
		k := p.o.Kube
		return results.Platform{Name: "kube", Network: "pods", Transparent: true, ResourceSource: UsageSource,
			NetworkReason: fmt.Sprintf("cluster %s (%s, context %s): %s", k.Cluster, k.Server, k.Context, podsReason),
			Cluster:       k.Cluster, Kubernetes: p.version, KubeNodes: p.nodes, Pods: maps.Clone(p.placed), Services: maps.Clone(p.services)}
	}
	how := "named with --cluster"
	if p.o.Create != nil {
		how = "created for the run"
		if !p.o.Keep {
			how += ", deleted at its end"
		}
	}
	return results.Platform{Name: "kind", Network: "pods", Transparent: true, ResourceSource: UsageSource,
		NetworkReason: fmt.Sprintf("kind cluster %s (%s): %s", FullName(p.o.Cluster), how, podsReason),
		Cluster:       FullName(p.o.Cluster), Kubernetes: p.version, KubeNodes: p.nodes, Pods: maps.Clone(p.placed), Services: maps.Clone(p.services)}
}

// podsReason says how the platform runs nodes and processes.
const podsReason = "one pod per node (a shared node's, where per-node proxies run, a DaemonSet's; the control plane's and a replicated service's a Deployment's), processes as ephemeral containers; a deployment with redirects in pods made for it (of nodes that are pods of their own), its processes their containers and its redirect their init container"

// Up creates the cluster (when asked to), loads the image, and creates
// the run's namespace and one pod per name; the nodes' addresses are the
// pods'. On failure it removes what it created.
func (p *platform) Up(ctx context.Context, names []string) (_ map[string]meshes.Node, err error) {
	st, err := newKindState(p.o.StateDir, p.o.RunID, p.clusterName(), p.o.Kube)
	if err != nil {
		return nil, err
	}
	p.st = st
	defer func() {
		if err != nil {
			err = errors.Join(err, p.Down(context.WithoutCancel(ctx)))
		}
	}()
	if err := st.update(func(r *kindRecord) { r.Control = p.ctl }); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(p.ctl, 0o755); err != nil {
		return nil, err
	}
	if err := p.connect(ctx); err != nil {
		return nil, err
	}
	if err := p.describeCluster(ctx); err != nil {
		return nil, err
	}
	if err := st.update(func(r *kindRecord) { r.Namespace = p.ns }); err != nil {
		return nil, err
	}
	cs := p.client.cs
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: p.ns,
		Labels: map[string]string{RunLabel: p.o.RunID}}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", p.ns, err)
	}
	if !p.kube() {
		if err := p.routes(ctx); err != nil {
			return nil, err
		}
	} else if !p.roles {
		p.o.Log.Logf("the nodes of cluster %s are not labelled %s=%s and =%s: the load generator's pods and the system under test's may share nodes", p.o.Kube.Cluster, RoleLabel, RoleLoadGen, RoleSUT)
	}
	// Nodes that others must run with first: their pods then schedule
	// at once.
	order := slices.Clone(names)
	slices.SortStableFunc(order, func(a, b string) int { return cmp.Compare(p.o.Together[a], p.o.Together[b]) })
	owners := map[string]string{}
	for _, n := range order {
		if owners[n], err = p.createNode(ctx, n); err != nil {
			return nil, err
		}
	}
	nodes := map[string]meshes.Node{}
	// In creation order: a shared node's pod first, so that what keeps
	// it from running is what the error says, not its pods' affinity.
	for _, n := range order {
		pod, err := p.waitRunning(ctx, n)
		if p.kube() {
			if ferr := p.checkFit(ctx, n, pod, err); ferr != nil {
				return nil, ferr
			}
		}
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n, err)
		}
		addr, err := netip.ParseAddr(pod.Status.PodIP)
		if err != nil {
			return nil, fmt.Errorf("node %s: pod %s's address %q: %w", n, pod.Name, pod.Status.PodIP, err)
		}
		p.mu.Lock()
		p.pods[n] = pod
		p.placed[n] = results.KubePod{Pod: pod.Name, Owner: owners[n], Node: pod.Spec.NodeName}
		p.mu.Unlock()
		nodes[n] = meshes.Node{Name: n, Addr: addr, Local: netip.MustParseAddr("127.0.0.1")}
		p.o.Log.Logf("node %s: pod %s (%s) on %s, %s", n, pod.Name, owners[n], pod.Spec.NodeName, addr)
	}
	p.follows.Add(1)
	go p.watch()
	return nodes, nil
}

// connect makes the client: of the cluster it names on kube; else of the
// kind cluster, which it creates first when asked to, loading the image.
func (p *platform) connect(ctx context.Context) error {
	if p.kube() {
		c, err := KubeClient(*p.o.Kube)
		if err != nil {
			return err
		}
		p.client = c
		return nil
	}
	if c := p.o.Create; c != nil {
		// Never take over a cluster of that name: it would be deleted.
		ok, err := Exists(p.o.Cluster, p.o.Log)
		if err != nil {
			return fmt.Errorf("list kind clusters: %w", err)
		}
		if ok {
			return fmt.Errorf("cluster %s exists already", FullName(p.o.Cluster))
		}
		if err := p.st.update(func(r *kindRecord) { r.CreatedCluster, r.Keep = true, p.o.Keep }); err != nil {
			return err
		}
		co := *c
		co.Shares = append(co.Shares, p.o.Share)
		if _, err := Create(ctx, co); err != nil {
			return err
		}
	}
	cfg, err := Kubeconfig(p.o.Cluster, p.o.Log)
	if err != nil {
		return fmt.Errorf("cluster %s: kubeconfig: %w", FullName(p.o.Cluster), err)
	}
	if p.client, err = NewClient([]byte(cfg)); err != nil {
		return err
	}
	return p.loadImage()
}

// ErrNotShared is CheckShared's error for a directory the cluster's
// nodes do not mount.
var ErrNotShared = errors.New("not shared with the cluster's nodes")

// CheckShared checks that every node of a cluster mounts dir (or a
// directory holding it) at the same path.
func CheckShared(cluster, dir string, log Logger) error {
	shared, err := Shared(cluster, log)
	if err != nil {
		return err
	}
	for _, d := range shared {
		if rel, err := filepath.Rel(d, dir); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return nil
		}
	}
	return fmt.Errorf("%s: %w: cluster %s mounts %v; the run's pods read their configuration and write their results there: create the cluster with 'meshbench cluster create --share DIR' for a DIR holding the results directory", dir, ErrNotShared, FullName(cluster), shared)
}

// loadImage loads the image into nodes that lack it, recording it for
// removal when the cluster outlives the run.
func (p *platform) loadImage() error {
	unlock, err := lockRuns(p.o.StateDir)
	if err != nil {
		return err
	}
	if err := p.st.update(func(r *kindRecord) { r.Uses = append(r.Uses, p.o.Image) }); err != nil {
		unlock()
		return err
	}
	ok, err := HasImage(p.o.Cluster, p.o.Image, p.o.Log)
	if err != nil || ok {
		unlock()
		return err
	}
	if p.o.Create == nil || p.o.Keep {
		if err := p.st.update(func(r *kindRecord) { r.Images = append(r.Images, p.o.Image) }); err != nil {
			unlock()
			return err
		}
	}
	// Recorded: the load itself (seconds) need not hold up other runs.
	unlock()
	start := time.Now()
	if err := LoadImages(p.o.Cluster, p.o.WriteImages, p.o.Log); err != nil {
		return fmt.Errorf("load %s: %w", p.o.Image, err)
	}
	p.o.Log.Logf("loaded %s into the nodes in %s", p.o.Image, time.Since(start).Round(100*time.Millisecond))
	return nil
}

// describeCluster records the Kubernetes version and the nodes.
func (p *platform) describeCluster(ctx context.Context) error {
	v, err := p.client.cs.Discovery().ServerVersion()
	if err != nil {
		return fmt.Errorf("cluster %s: server version: %w", p.clusterName(), err)
	}
	l, err := p.client.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.version = v.GitVersion
	p.roles = byRole(l.Items)
	p.hosts = sutHosts(l.Items, p.roles)
	for _, n := range l.Items {
		role := n.Labels[RoleLabel]
		if _, ok := n.Labels["node-role.kubernetes.io/control-plane"]; ok {
			role = "control-plane"
		} else if role == "" {
			role = "worker"
		}
		p.nodes = append(p.nodes, results.KubeNode{Name: n.Name, Role: role, Kubelet: n.Status.NodeInfo.KubeletVersion,
			CPUs: n.Status.Capacity.Cpu().Value(), MemoryMB: n.Status.Capacity.Memory().Value() >> 20})
	}
	return nil
}

// routes routes every node's pod range from this host through the node,
// so that the runner's probes (and nothing else) reach the pods, as they
// reach the local platform's namespaces.
func (p *platform) routes(ctx context.Context) error {
	l, err := p.client.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, n := range l.Items {
		var addr string
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP && !strings.Contains(a.Address, ":") {
				addr = a.Address
			}
		}
		if n.Spec.PodCIDR == "" || addr == "" {
			return fmt.Errorf("node %s has no pod range or address", n.Name)
		}
		if err := p.route(ctx, []string{n.Spec.PodCIDR, "via", addr}); err != nil {
			return fmt.Errorf("the pods of %s: %w", n.Name, err)
		}
	}
	return nil
}

// route adds a route ("DEST via ADDR") from this host into the cluster,
// recorded before it is added. A destination routed elsewhere already
// (another cluster's pods in the same range) is refused: the two could
// not be told apart.
func (p *platform) route(ctx context.Context, route []string) error {
	unlock, err := lockRuns(p.o.StateDir)
	if err != nil {
		return err
	}
	defer unlock()
	if cur, err := runIP(ctx, "-4", "route", "show", "exact", route[0]); err == nil && cur != "" && !strings.Contains(cur+" ", " via "+route[2]+" ") {
		return fmt.Errorf("%s cannot be routed from this host: it is routed elsewhere already (%s; another cluster?)", route[0], cur)
	}
	if err := p.st.update(func(r *kindRecord) { r.Routes = append(r.Routes, route) }); err != nil {
		return err
	}
	if out, err := runIP(ctx, append([]string{"route", "replace"}, route...)...); err != nil {
		return fmt.Errorf("ip route replace %s: %v: %s", strings.Join(route, " "), err, out)
	}
	return nil
}

// NodeLabel names the meshbench node a pod is.
const NodeLabel = "meshbench.dev/node"

// ReplicasLabel names the replicated service whose Deployment made a pod:
// the Deployment's selector.
const ReplicasLabel = "meshbench.dev/replicas"

// shared says other nodes share node n (their pods run on its Kubernetes
// node, and its per-node proxies serve them).
func (p *platform) shared(n string) bool {
	for _, with := range p.o.Together {
		if with == n {
			return true
		}
	}
	return false
}

// createNode creates what makes node n's pod and says what that is:
//   - a shared node's pod is a DaemonSet's (its per-node proxies are, on
//     Kubernetes, a DaemonSet), which is pinned to one node of the system
//     under test (the shared nodes take them in turn), so that it has one
//     pod: this node;
//   - the control plane's node is a Deployment's pod, as a mesh's
//     control plane is, on the load generator's worker where the nodes
//     are placed by role (its process is pinned to the CPU of its class,
//     as locally, wherever it runs);
//   - every other node is a pod of its own.
//
// The pods of controllers restart their holder if it exits (their
// policy must be Always), which the holder does only when stopped.
func (p *platform) createNode(ctx context.Context, n string) (string, error) {
	pod := p.nodePod(n)
	apps := p.client.cs.AppsV1()
	tmpl := func() corev1.PodTemplateSpec {
		spec := pod.Spec
		spec.RestartPolicy = corev1.RestartPolicyAlways
		return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: pod.Labels}, Spec: spec}
	}
	selector := &metav1.LabelSelector{MatchLabels: pod.Labels}
	meta := metav1.ObjectMeta{Name: pod.Name, Namespace: p.ns, Labels: pod.Labels}
	switch svc := p.replicaOf(n); {
	case svc != "":
		nodes := p.o.Replicas[svc]
		owner := "Deployment/" + dnsLabel(nodes[0])
		if n != nodes[0] {
			return owner, nil // its first node's made it
		}
		t := tmpl()
		// Not the app label its Service selects: Expose gives that to
		// the claimed pods alone, so that a pod the ReplicaSet makes
		// later, no node's, gets none of the Service's connections.
		t.Labels = map[string]string{RunLabel: p.o.RunID, ReplicasLabel: serviceName(svc)}
		count := int32(len(nodes))
		d := &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Replicas: &count,
			Selector: &metav1.LabelSelector{MatchLabels: t.Labels}, Template: t}}
		if _, err := apps.Deployments(p.ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			return "", fmt.Errorf("create the Deployment of service %s's nodes %s: %w", svc, strings.Join(nodes, ", "), err)
		}
		return owner, nil
	case n == scenarios.ControlPlaneNode:
		one := int32(1)
		d := &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: selector, Template: tmpl(),
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}}}
		if _, err := apps.Deployments(p.ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			return "", fmt.Errorf("create the Deployment of node %s: %w", n, err)
		}
		return "Deployment/" + d.Name, nil
	case p.shared(n):
		t := tmpl()
		host, err := p.hostOf(n)
		if err != nil {
			return "", err
		}
		t.Spec.NodeSelector = map[string]string{corev1.LabelHostname: host}
		ds := &appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Selector: selector, Template: t}}
		if _, err := apps.DaemonSets(p.ns).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
			return "", fmt.Errorf("create the DaemonSet of node %s: %w", n, err)
		}
		return "DaemonSet/" + ds.Name, nil
	}
	if _, err := p.client.cs.CoreV1().Pods(p.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return "", fmt.Errorf("create the pod of node %s: %w", n, err)
	}
	return "Pod/" + pod.Name, nil
}

// hostOf is the Kubernetes node a shared node's DaemonSet is pinned to:
// the system under test's nodes, taken in turn by the shared nodes in
// name order.
func (p *platform) hostOf(n string) (string, error) {
	if len(p.hosts) == 0 {
		return "", fmt.Errorf("%w: node %s: no Kubernetes node for its DaemonSet: none takes pods (not cordoned, not tainted NoSchedule or NoExecute) that is labelled %s=%s where the nodes are placed by role", ErrUnfit, n, RoleLabel, RoleSUT)
	}
	var names []string
	for _, with := range p.o.Together {
		if !slices.Contains(names, with) {
			names = append(names, with)
		}
	}
	slices.Sort(names)
	return p.hosts[slices.Index(names, n)%len(p.hosts)], nil
}

// sutHosts are the Kubernetes nodes that may run the system under
// test's shared nodes, in name order: of the nodes that take pods (not
// cordoned, no NoSchedule or NoExecute taint, which a DaemonSet's pods
// do not tolerate), those labelled with its role when the nodes are
// placed by role; else all of them but the control plane's, or the
// control plane's where that is all there is (a one-node cluster).
func sutHosts(nodes []corev1.Node, roles bool) []string {
	var out, cps []string
	for _, n := range nodes {
		if n.Spec.Unschedulable || slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool {
			return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
		}) {
			continue
		}
		if roles {
			if n.Labels[RoleLabel] == RoleSUT {
				out = append(out, n.Name)
			}
			continue
		}
		if _, cp := n.Labels["node-role.kubernetes.io/control-plane"]; cp {
			cps = append(cps, n.Name)
		} else {
			out = append(out, n.Name)
		}
	}
	if len(out) == 0 {
		out = cps
	}
	slices.Sort(out)
	return out
}

// nodePod is the pod of a meshbench node: a holder container that keeps
// the network namespace, and the shared directory.
func (p *platform) nodePod(name string) *corev1.Pod {
	role := RoleSUT
	if slices.Contains(p.o.LoadGen, name) || name == scenarios.ControlPlaneNode {
		role = RoleLoadGen
	}
	yes, grace := true, int64(2)
	dirType := corev1.HostPathDirectory
	var selector map[string]string
	if !p.kube() || p.roles {
		selector = map[string]string{RoleLabel: role}
	}
	var initc []corev1.Container
	if p.kube() {
		// A node without the directory gets an empty one, which the
		// share check then finds lacking, at once (a missing directory
		// would hold the pod in ContainerCreating).
		dirType = corev1.HostPathDirectoryOrCreate
		initc = []corev1.Container{p.shareCheck()}
	}
	var affinity *corev1.Affinity
	if with := p.o.Together[name]; with != "" {
		// On the Kubernetes node of the pod of the node it shares.
		affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{NodeLabel: dnsLabel(with)}},
				TopologyKey:   corev1.LabelHostname,
			}},
		}}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: dnsLabel(name), Namespace: p.ns,
			Labels: map[string]string{RunLabel: p.o.RunID, NodeLabel: dnsLabel(name)}},
		Spec: corev1.PodSpec{
			Affinity:                      affinity,
			ShareProcessNamespace:         &yes,
			TerminationGracePeriodSeconds: &grace,
			RestartPolicy:                 corev1.RestartPolicyNever,
			EnableServiceLinks:            new(bool),
			NodeSelector:                  selector,
			InitContainers:                initc,
			Volumes: []corev1.Volume{{Name: "share", VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: p.o.Share, Type: &dirType}}}},
			Containers: []corev1.Container{{
				Name: "node", Image: p.o.Image, ImagePullPolicy: corev1.PullNever,
				Command: p.wrapper("--hold"),
			}},
		},
	}
}

// waitRunning waits until node's pod (its own, or its controller's,
// found by its label) runs and has its address.
func (p *platform) waitRunning(ctx context.Context, node string) (*corev1.Pod, error) {
	var pod *corev1.Pod
	var last, never error // never: it will not run
	name := "of node " + node
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pod, last = p.podOf(ctx, node)
		if pod == nil {
			// A controller that cannot create the pod (admission,
			// a quota) says so in an event, and will not.
			never = p.createFailed(ctx, node)
			return false, never
		}
		name = pod.Name
		if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
			never = fmt.Errorf("pod %s ended (%s): %s", name, pod.Status.Phase, strings.TrimSpace(pod.Status.Message+" "+podWhy(pod)))
		} else if why := imageMissing(pod); why != "" && p.kube() {
			never = p.noImage(node, pod, why)
		} else if p.kube() {
			// A controller's pod retries a failed share check
			// for ever: it fails once.
			never = p.checkShared(node, pod)
		}
		if never != nil {
			return false, never
		}
		// Running and its holder ready: a controller's pod whose
		// holder keeps failing runs all the same.
		return pod.Status.Phase == corev1.PodRunning && pod.Status.PodIP != "" && holderReady(pod), nil
	})
	if never != nil {
		return nil, never
	}
	if err != nil {
		if pod != nil {
			return nil, fmt.Errorf("pod %s not running after 2m (phase %s, %s): %w", name, pod.Status.Phase, podWhy(pod), err)
		}
		return nil, fmt.Errorf("pod %s: %v (%v)", name, err, last)
	}
	return pod, nil
}

// podOf is node's pod: the run's pod labelled with the node that is not
// being deleted; for a node of a replicated service that has none yet,
// one of its Deployment's pods that no node has, which it then labels
// with the node.
func (p *platform) podOf(ctx context.Context, node string) (*corev1.Pod, error) {
	pod, err := p.firstPod(ctx, NodeLabel+"="+dnsLabel(node))
	if pod != nil {
		return pod, nil
	}
	svc := p.replicaOf(node)
	if err != nil || svc == "" {
		return nil, cmp.Or(err, errNoPod)
	}
	free, err := p.firstPod(ctx, ReplicasLabel+"="+serviceName(svc)+",!"+NodeLabel)
	if free == nil {
		return nil, cmp.Or(err, errNoPod)
	}
	// On the version listed: a pod changed since is claimed on a
	// later poll, or not at all.
	patch := fmt.Appendf(nil, `{"metadata":{"resourceVersion":%q,"labels":{%q:%q}}}`, free.ResourceVersion, NodeLabel, dnsLabel(node))
	if pod, err = p.client.cs.CoreV1().Pods(p.ns).Patch(ctx, free.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return nil, fmt.Errorf("label pod %s as node %s's: %w", free.Name, node, err)
	}
	return pod, nil
}

// errNoPod is podOf's error while a node has no pod.
var errNoPod = errors.New("no pod yet")

// firstPod is the first, by name, of the run's pods that selector
// matches and that is not being deleted, or nil.
func (p *platform) firstPod(ctx context.Context, selector string) (*corev1.Pod, error) {
	l, err := p.client.cs.CoreV1().Pods(p.ns).List(ctx, metav1.ListOptions{LabelSelector: selector + "," + RunLabel + "=" + p.o.RunID})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(l.Items, func(a, b corev1.Pod) int { return cmp.Compare(a.Name, b.Name) })
	for i := range l.Items {
		if l.Items[i].DeletionTimestamp == nil {
			return &l.Items[i], nil
		}
	}
	return nil, nil
}

// replicaOf is the replicated service whose Deployment runs node's pod,
// or "".
func (p *platform) replicaOf(node string) string {
	for svc, nodes := range p.o.Replicas {
		if slices.Contains(nodes, node) {
			return svc
		}
	}
	return ""
}

// ownerName is the name of the object that made node's pod: the
// Deployment of a replicated service's nodes, named as its first; else
// node's own (its pod, DaemonSet or Deployment).
func (p *platform) ownerName(node string) string {
	if svc := p.replicaOf(node); svc != "" {
		return dnsLabel(p.o.Replicas[svc][0])
	}
	return dnsLabel(node)
}

// createFailed is why a node's controller cannot create its pod (its
// FailedCreate event), or nil.
func (p *platform) createFailed(ctx context.Context, node string) error {
	l, err := p.client.cs.CoreV1().Events(p.ns).List(ctx, metav1.ListOptions{FieldSelector: "type=Warning,reason=FailedCreate"})
	if err != nil {
		return nil
	}
	name := p.ownerName(node)
	for _, e := range l.Items {
		o := e.InvolvedObject
		// A DaemonSet's own event, or its Deployment's ReplicaSet's
		// (named <deployment>-<pod-template-hash>, the hash without a
		// dash: not node a's when it is node a-b's).
		hash, ok := strings.CutPrefix(o.Name, name+"-")
		if o.Kind == "DaemonSet" && o.Name == name || o.Kind == "ReplicaSet" && ok && !strings.Contains(hash, "-") {
			return fmt.Errorf("%s %s cannot create the pod of node %s: %s", o.Kind, o.Name, node, e.Message)
		}
	}
	return nil
}

// holderReady says the pod's holder container is ready.
func holderReady(pod *corev1.Pod) bool {
	for _, s := range pod.Status.ContainerStatuses {
		if s.Name == "node" {
			return s.Ready
		}
	}
	return false
}

// podWhy is why a pod's containers wait, or why they last failed, for
// errors.
func podWhy(pod *corev1.Pod) string {
	var why []string
	for _, c := range pod.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			why = append(why, c.Message)
		}
	}
	for _, s := range append(slices.Clone(pod.Status.InitContainerStatuses), pod.Status.ContainerStatuses...) {
		if w := s.State.Waiting; w != nil {
			why = append(why, s.Name+": "+w.Reason+" "+w.Message)
		}
		if t := s.LastTerminationState.Terminated; t != nil && t.ExitCode != 0 {
			why = append(why, fmt.Sprintf("%s: last exit code %d (%s) %s", s.Name, t.ExitCode, t.Reason, t.Message))
		}
	}
	return strings.Join(why, "; ")
}

// Deploy places a unit in the phases runner.PlaceUnit gives a pod:
// applications, redirects (meshbench redirect with NET_ADMIN, in the init
// container of a pod made for the deployment, as istio-init, or in an
// ephemeral container), the other processes.
func (p *platform) Deploy(ctx context.Context, u runner.Unit) (runner.Deployed, error) {
	return runner.PlaceUnit(ctx, u, p)
}

// Redirect installs each node's redirects with meshbench redirect: in
// its init container where the node's pod was made for the deployment
// (Prepare), the rules then going with the pod; else in an ephemeral
// container of its pod, the removal running it again with --remove.
func (p *platform) Redirect(ctx context.Context, rs []meshes.Redirect) (func(context.Context) error, error) {
	byNode := map[string][]string{}
	var order []string
	for _, r := range rs {
		if _, ok := byNode[r.Node]; !ok {
			order = append(order, r.Node)
		}
		byNode[r.Node] = append(byNode[r.Node], RedirectArgs(r)...)
	}
	comment := "meshbench:" + p.o.RunID
	var done []string
	undo := func(ctx context.Context) error {
		var errs []error
		for i := len(done) - 1; i >= 0; i-- {
			n := done[i]
			errs = append(errs, p.runToEnd(ctx, n, "unredirect", append([]string{"redirect", "--remove", "--comment", comment}, byNode[n]...), false))
		}
		return errors.Join(errs...)
	}
	for _, n := range order {
		args := append([]string{"redirect", "--comment", comment}, byNode[n]...)
		if p.madeWithRedirect(n) {
			// Its init container: the rules go with the pod (release).
			if err := p.runToEnd(ctx, n, "redirect", args, true); err != nil {
				return nil, errors.Join(err, undo(context.WithoutCancel(ctx)))
			}
			continue
		}
		// Undone too if it fails: a redirect stopped halfway leaves rules
		// (and --remove is repeatable).
		done = append(done, n)
		if err := p.runToEnd(ctx, n, "redirect", args, false); err != nil {
			return nil, errors.Join(err, undo(context.WithoutCancel(ctx)))
		}
	}
	return undo, nil
}

// madeWithRedirect says node n's pod was made for the deployment with an
// init container for its redirect that has not run.
func (p *platform) madeWithRedirect(n string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.made[n]
	return m != nil && m.redirect != "" && !m.used[m.redirect]
}

// RedirectArgs are meshbench redirect's flags for a redirect.
func RedirectArgs(r meshes.Redirect) []string {
	if r.Service.IsValid() {
		eps := make([]string, len(r.Endpoints))
		for i, a := range r.Endpoints {
			eps[i] = a.String()
		}
		return []string{"--service", meshes.HostPort(r.Service, r.Port) + "=" + strings.Join(eps, ",")}
	}
	if !r.Outbound {
		return []string{"--inbound", strconv.Itoa(r.Port) + ":" + strconv.Itoa(r.ToPort)}
	}
	args := []string{"--outbound", strconv.Itoa(r.ToPort)}
	if r.ExcludeMark != 0 {
		args = append(args, "--exclude-mark", strconv.Itoa(r.ExcludeMark))
	}
	if r.ExcludeUID != 0 {
		args = append(args, "--exclude-uid", strconv.Itoa(r.ExcludeUID))
	}
	return args
}

// MeterUsage reads the processes' containers' figures from the kubelets.
func (p *platform) MeterUsage(procs []runner.Process) func() []results.Usage {
	cs := make([]Container, len(procs))
	for i, rp := range procs {
		pr, ok := rp.(*process)
		if !ok {
			cs[i] = Container{Component: rp.Name()}
			continue
		}
		cs[i] = Container{Node: pr.node, Namespace: p.ns, Pod: pr.pod, Name: pr.container, Component: pr.name, Class: pr.class, MeshNode: pr.meshNode}
	}
	return p.client.MeterUsage(p.ctx, cs, 2*time.Second)
}

// Down stops every process, deletes the namespace (and with it the pods),
// removes the routes, the images it loaded and the control directory, and
// deletes the cluster it created unless told to keep it. Every step is
// attempted; what fails stays in the state file for the next start.
func (p *platform) Down(ctx context.Context) error {
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		return nil
	}
	p.down = true
	var procs []*process
	for _, pr := range p.procs {
		procs = append(procs, pr)
	}
	p.mu.Unlock()
	runner.StopAll(ctx, procs, runner.DefaultStopTimeout)
	p.cancel()
	p.follows.Wait()
	if p.st == nil {
		return nil
	}
	// The run's own namespace first, outside the lock: it takes seconds,
	// and other runs need the lock meanwhile. (A cluster the run created
	// goes whole.)
	r := p.st.rec
	if r.Namespace != "" && p.client != nil && !(r.CreatedCluster && !r.Keep) {
		if err := deleteNamespace(context.WithoutCancel(ctx), p.client, r.Namespace); err != nil {
			return fmt.Errorf("remove the run's objects (kept %s for the next start): %w", p.st.path(), err)
		}
		if err := p.st.update(func(r *kindRecord) { r.Namespace = "" }); err != nil {
			return err
		}
	}
	unlock, err := lockRuns(p.o.StateDir)
	if err != nil {
		return err
	}
	defer unlock()
	others, err := liveOthers(p.o.StateDir, p.o.RunID)
	var kept *kindRecord
	if err == nil {
		kept, err = removeKindRun(context.WithoutCancel(ctx), p.st.rec, p.client, others, p.o.Log)
	}
	if err != nil {
		return fmt.Errorf("remove the run's objects (kept %s for the next start): %w", p.st.path(), err)
	}
	if kept != nil {
		// Live runs use some of it: a start after them removes it.
		p.o.Log.Logf("left to a later start (live runs use them): %s", p.st.path())
		p.st.rec = *kept
		return errors.Join(os.RemoveAll(p.ctl), results.WriteJSON(p.st.path(), kept))
	}
	return errors.Join(os.RemoveAll(p.ctl), p.st.remove())
}

// dnsLabel makes s a DNS label (lowercase letters, digits, '-').
func dnsLabel(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			b[i] = '-'
		}
	}
	return strings.Trim(trimLabel(string(b), 63), "-")
}

func trimLabel(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

type nopLogger struct{}

func (nopLogger) Logf(string, ...any) {}

// isGone says an object is already deleted.
func isGone(err error) bool { return err == nil || apierrors.IsNotFound(err) }
