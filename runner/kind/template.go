package kind

// A deployment's pods made whole, as a mesh's injector makes them: the
// application's and the sidecar's containers in the pod's template and
// an init container that installs the redirect, as istio-init does,
// instead of ephemeral containers added to the node's holder pod.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/runner"
	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/scenarios"
)

// MadeLabel names the meshbench node a pod made for a deployment
// (Prepare) stands in for (kubectl get pods -l meshbench.dev/made-for).
const MadeLabel = "meshbench.dev/made-for"

var _ runner.Preparer = (*platform)(nil)

// madePod is a pod made for a deployment on a node: its containers by
// process name, the redirect's init container, and which have been
// given their process.
type madePod struct {
	node       string
	holder     *corev1.Pod // the node's pod, which it stands in for
	pod        *corev1.Pod
	containers map[string]string
	redirect   string
	used       map[string]bool
	// app is the Service label the holder carried, which the made pod
	// carries while it stands in.
	app string
}

// take is the container of the process name (the redirect's with
// redirect) if it has not run yet, else "".
func (m *madePod) take(name string, redirect bool) string {
	c := m.containers[name]
	if redirect {
		c = m.redirect
	}
	if c == "" || m.used[c] {
		return ""
	}
	m.used[c] = true
	return c
}

// Prepare makes, for each pod with redirects of a node that is a pod of
// its own (not a Deployment's or a DaemonSet's), a pod in which the
// deployment runs instead of the node's holder pod: its processes'
// containers in the order runner.PlaceUnit starts them: the
// applications as sidecar containers (init containers that run on,
// restartPolicy Always), then the init container that installs the
// redirect, then the others (the proxies) as sidecar containers. Each
// runs the wrapper waiting for its command line (podproc.Await), so
// that the kubelet's order and PlaceUnit's agree: the applications run
// and answer before the redirect goes in, and the proxies start once it
// has. The made pods take their nodes' Services' label from the holders
// (whose Services publish pods not ready: a made pod is not until its
// redirect is in) and their place in the platform (the load, faults and
// usage go to them) until release, which gives both back and deletes
// them.
func (p *platform) Prepare(ctx context.Context, shapes []runner.PodShape) (_ map[string]meshes.Node, _ func(context.Context) error, err error) {
	var made []*madePod
	release := func(ctx context.Context) error { return p.release(ctx, made) }
	defer func() {
		if err != nil {
			err = errors.Join(err, release(context.WithoutCancel(ctx)))
		}
	}()
	for _, sh := range shapes {
		if !sh.Redirects || !p.ownPod(sh.Node) {
			continue
		}
		m, err := p.makePod(ctx, sh)
		if errors.Is(err, errNoSidecars) {
			p.mu.Lock()
			p.noSidecars = true
			p.mu.Unlock()
			p.o.Log.Logf("%v: the processes of every deployment run as ephemeral containers of the nodes' pods", err)
			return nil, nil, release(ctx)
		}
		if err != nil {
			return nil, nil, err
		}
		made = append(made, m)
	}
	nodes := map[string]meshes.Node{}
	for _, m := range made {
		pod, err := p.waitAddress(ctx, m.pod.Name)
		if err != nil {
			return nil, nil, fmt.Errorf("node %s: %w", m.node, err)
		}
		addr, err := netip.ParseAddr(pod.Status.PodIP)
		if err != nil {
			return nil, nil, fmt.Errorf("node %s: pod %s's address %q: %w", m.node, pod.Name, pod.Status.PodIP, err)
		}
		m.pod = pod
		nodes[m.node] = meshes.Node{Name: m.node, Addr: addr, Local: netip.MustParseAddr("127.0.0.1")}
		p.o.Log.Logf("node %s: pod %s made for the deployment on %s, %s", m.node, pod.Name, pod.Spec.NodeName, addr)
	}
	if err := p.standIn(ctx, made, true); err != nil {
		return nil, nil, err
	}
	return nodes, release, nil
}

// ownPod says node n is a pod of its own, not a controller's, on a
// cluster that has sidecar containers.
func (p *platform) ownPod(n string) bool {
	p.mu.Lock()
	_, ok := p.pods[n]
	no := p.noSidecars
	p.mu.Unlock()
	return ok && !no && p.replicaOf(n) == "" && !p.shared(n) && n != scenarios.ControlPlaneNode
}

// errNoSidecars is makePod's error on a cluster whose API server drops
// an init container's restartPolicy (Kubernetes before 1.29, or its
// SidecarContainers feature off).
var errNoSidecars = errors.New("the cluster has no sidecar containers (init containers with restartPolicy Always: Kubernetes 1.29 and later)")

// makePod creates the pod of a shape on its node.
func (p *platform) makePod(ctx context.Context, sh runner.PodShape) (*madePod, error) {
	pod := p.nodePod(sh.Node)
	p.mu.Lock()
	holder := p.pods[sh.Node]
	p.seq++
	pod.Name = dnsLabel(fmt.Sprintf("%s-made-%d", trimLabel(pod.Name, 40), p.seq))
	m := &madePod{node: sh.Node, holder: holder, containers: map[string]string{}, used: map[string]bool{}}
	for svc, nodes := range p.backends {
		if slices.Contains(nodes, sh.Node) {
			m.app = serviceName(svc)
		}
	}
	container := func(name string, sidecar bool) corev1.Container {
		p.seq++
		cname := dnsLabel(fmt.Sprintf("%s-%d", trimLabel(name, 50), p.seq))
		args := []string{"--control", p.ctl, "--name", cname, "--await"}
		c := corev1.Container{Name: cname, Image: p.o.Image, ImagePullPolicy: corev1.PullNever,
			VolumeMounts:    []corev1.VolumeMount{{Name: "share", MountPath: p.o.Share}},
			SecurityContext: &corev1.SecurityContext{Capabilities: processCaps()}}
		if sidecar {
			always := corev1.ContainerRestartPolicyAlways
			c.RestartPolicy = &always
			args = append(args, "--idle")
		}
		c.Command = p.wrapper(args...)
		return c
	}
	var apps, others []corev1.Container
	for _, ps := range sh.Processes {
		c := container(ps.Name, true)
		m.containers[ps.Name] = c.Name
		if ps.Class == results.ClassApp {
			apps = append(apps, c)
		} else {
			others = append(others, c)
		}
	}
	redirect := container("redirect", false)
	m.redirect = redirect.Name
	p.mu.Unlock()
	pod.Labels = map[string]string{RunLabel: p.o.RunID, MadeLabel: dnsLabel(sh.Node)}
	pod.Spec.InitContainers = slices.Concat(pod.Spec.InitContainers, apps, []corev1.Container{redirect}, others)
	// On the node's Kubernetes node, as the rows without sidecars.
	if pod.Spec.NodeSelector == nil {
		pod.Spec.NodeSelector = map[string]string{}
	}
	pod.Spec.NodeSelector[corev1.LabelHostname] = holder.Spec.NodeName
	pods := p.client.cs.CoreV1().Pods(p.ns)
	created, err := pods.Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("node %s: create the pod made for the deployment: %w", sh.Node, err)
	}
	if slices.ContainsFunc(created.Spec.InitContainers, func(c corev1.Container) bool {
		return m.isProcess(c.Name) && c.RestartPolicy == nil
	}) {
		grace := int64(0)
		_ = pods.Delete(context.WithoutCancel(ctx), created.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
		return nil, errNoSidecars
	}
	m.pod = created
	return m, nil
}

// isProcess says container c is one of a process of the shape.
func (m *madePod) isProcess(c string) bool {
	for _, name := range m.containers {
		if name == c {
			return true
		}
	}
	return false
}

// processCaps are the capabilities of a process's container: a redirect
// and a fault agent change the pod's network, and a proxy marks its
// connections (SO_MARK).
func processCaps() *corev1.Capabilities {
	return &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}}
}

// waitAddress waits until a pod has its address (its init containers may
// still run).
func (p *platform) waitAddress(ctx context.Context, name string) (*corev1.Pod, error) {
	var pod *corev1.Pod
	var never error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, startTimeout, true, func(ctx context.Context) (bool, error) {
		var err error
		if pod, err = p.client.cs.CoreV1().Pods(p.ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return false, nil
		}
		if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
			never = fmt.Errorf("pod %s ended (%s): %s", name, pod.Status.Phase, podWhy(pod))
			return false, never
		}
		return pod.Status.PodIP != "", nil
	})
	if never != nil {
		return nil, never
	}
	if err != nil {
		why := ""
		if pod != nil {
			why = fmt.Sprintf(" (phase %s, %s)", pod.Status.Phase, podWhy(pod))
		}
		return nil, fmt.Errorf("pod %s has no address after %s%s: %w", name, startTimeout, why, err)
	}
	return pod, nil
}

// standIn puts the made pods in their holders' places (in) or gives the
// holders their places back: the pod the platform runs a node's
// processes in, and the node's Service label, after which it waits until
// the Services list the pods now theirs. Every place is given first, and
// every label tried: a failure leaves no node on a pod about to be
// deleted, nor a Service without its pods.
func (p *platform) standIn(ctx context.Context, made []*madePod, in bool) error {
	p.mu.Lock()
	for _, m := range made {
		if in {
			p.pods[m.node] = m.pod
			if p.made == nil {
				p.made = map[string]*madePod{}
			}
			p.made[m.node] = m
		} else if p.made[m.node] == m {
			p.pods[m.node] = m.holder
			delete(p.made, m.node)
		}
	}
	p.mu.Unlock()
	pods := p.client.cs.CoreV1().Pods(p.ns)
	label := func(pod *corev1.Pod, value string) error {
		v := "null" // removes it
		if value != "" {
			v = strconv.Quote(value)
		}
		patch := fmt.Appendf(nil, `{"metadata":{"labels":{%q:%s}}}`, AppLabel, v)
		_, err := pods.Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	}
	var errs []error
	var svcs []string
	for _, m := range made {
		if m.app == "" {
			continue
		}
		on, off := m.pod, m.holder
		if !in {
			on, off = off, on
		}
		// The pod taking the place first: the Service always has one.
		if err := label(on, m.app); err != nil {
			errs = append(errs, fmt.Errorf("node %s: label pod %s with service %s: %w", m.node, on.Name, m.app, err))
			continue
		}
		if err := label(off, ""); !isGone(err) {
			errs = append(errs, fmt.Errorf("node %s: take service label %s off pod %s: %w", m.node, m.app, off.Name, err))
			continue
		}
		if !slices.Contains(svcs, m.app) {
			svcs = append(svcs, m.app)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, name := range svcs {
		if err := p.waitEndpoints(ctx, name, p.serviceAddrs(name)); err != nil {
			return err
		}
	}
	return nil
}

// serviceAddrs are the addresses of the pods of a Service (by its name)
// now.
func (p *platform) serviceAddrs(service string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for svc, nodes := range p.backends {
		if serviceName(svc) != service {
			continue
		}
		for _, n := range nodes {
			if pod := p.pods[n]; pod != nil {
				out = append(out, pod.Status.PodIP)
			}
		}
	}
	return out
}

// release gives the holders their places back and deletes the made pods
// (which the next start removes with the namespace, should this fail),
// saying what ran in their containers.
func (p *platform) release(ctx context.Context, made []*madePod) error {
	if len(made) == 0 {
		return nil
	}
	err := p.standIn(ctx, made, false)
	grace := int64(2)
	for _, m := range made {
		derr := p.client.cs.CoreV1().Pods(p.ns).Delete(ctx, m.pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
		if !isGone(derr) {
			err = errors.Join(err, fmt.Errorf("delete pod %s: %w", m.pod.Name, derr))
			continue
		}
		p.mu.Lock()
		var idle []string
		for _, c := range m.containers {
			if !m.used[c] {
				idle = append(idle, c)
			}
		}
		redirected := m.used[m.redirect]
		p.mu.Unlock()
		slices.Sort(idle)
		did := fmt.Sprintf("%d processes ran in its containers", len(m.containers)-len(idle))
		if len(m.containers)-len(idle) == 1 {
			did = "1 process ran in its containers"
		}
		if len(idle) > 0 {
			did += fmt.Sprintf(" (%s never got theirs)", strings.Join(idle, ", "))
		}
		if redirected {
			did += ", its redirect in its init container"
		}
		p.o.Log.Logf("node %s: pod %s deleted: %s", m.node, m.pod.Name, did)
	}
	return err
}
