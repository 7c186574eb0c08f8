// Package kind runs meshbench's kind clusters: their lifecycle through
// sigs.k8s.io/kind's library (nodes as Docker containers), and what kind
// leaves to others offline: the pod network (kind's own CNI, kindnetd, is
// an image from a registry, so meshbench writes a static bridge
// configuration and the routes between nodes itself).
package kind

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
	kindlog "sigs.k8s.io/kind/pkg/log"
)

// Prefix namespaces meshbench's clusters among a user's kind clusters.
const Prefix = "meshbench-"

// Node roles, as the label RoleLabel on worker nodes: the load generator
// runs apart from the system under test.
const (
	RoleLabel   = "meshbench.dev/role"
	RoleLoadGen = "loadgen"
	RoleSUT     = "sut"
)

// Logger receives progress lines.
type Logger interface {
	Logf(format string, args ...any)
}

// ClusterOptions describe a cluster to create.
type ClusterOptions struct {
	// Name is the cluster's name without Prefix.
	Name string
	// Workers is the number of worker nodes: the first for the load
	// generator, the rest for the system under test (at least 1).
	Workers int
	// Image is the node image.
	Image string
	// Retain keeps the nodes of a failed creation, for debugging.
	Retain bool
	// Kubeconfig is where the cluster's kubeconfig is written (kind's
	// default, $KUBECONFIG or ~/.kube/config, when empty).
	Kubeconfig string
	// ReadyTimeout bounds the wait for every node to be Ready.
	ReadyTimeout time.Duration
	// Shares are host directories every node mounts at the same path:
	// the kind platform's pods read their configuration from, and write
	// their results to, the run's results directory there.
	Shares []string
	Log    Logger
}

// FullName is the kind cluster name of a meshbench cluster.
func FullName(name string) string {
	if strings.HasPrefix(name, Prefix) {
		return name
	}
	return Prefix + name
}

// ValidName checks a cluster name (without the prefix): kind uses it in
// container and network names.
func ValidName(name string) error {
	if name == "" || len(name) > 40 {
		return fmt.Errorf("cluster name %q: want 1-40 characters", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("cluster name %q: use lowercase letters, digits and '-'", name)
		}
	}
	return nil
}

func provider(log Logger) *cluster.Provider {
	return cluster.NewProvider(cluster.ProviderWithDocker(), cluster.ProviderWithLogger(kindLogger{log}))
}

// Config is the kind configuration of a cluster: one control plane and
// the workers labelled by role, kind's default CNI disabled (the pod
// network is set up by Create).
func Config(o ClusterOptions) *v1alpha4.Cluster {
	cfg := &v1alpha4.Cluster{Name: FullName(o.Name)}
	cfg.Kind, cfg.APIVersion = "Cluster", "kind.x-k8s.io/v1alpha4"
	cfg.Networking.DisableDefaultCNI = true
	cfg.Networking.PodSubnet = PodSubnet(cfg.Name)
	cfg.Networking.ServiceSubnet = ServiceSubnet(cfg.Name)
	cfg.Nodes = append(cfg.Nodes, v1alpha4.Node{Role: v1alpha4.ControlPlaneRole})
	for i := range max(o.Workers, 2) {
		role := RoleSUT
		if i == 0 {
			role = RoleLoadGen
		}
		cfg.Nodes = append(cfg.Nodes, v1alpha4.Node{Role: v1alpha4.WorkerRole, Labels: map[string]string{RoleLabel: role}})
	}
	for i := range cfg.Nodes {
		for _, dir := range o.Shares {
			cfg.Nodes[i].ExtraMounts = append(cfg.Nodes[i].ExtraMounts, v1alpha4.Mount{HostPath: dir, ContainerPath: dir})
		}
	}
	return cfg
}

// PodSubnet is a cluster's pod range: one of the 1024 /20 ranges of
// 10.128.0.0/10 by its name (room for 16 nodes of /24), so that this host
// can route to the pods of clusters side by side (kind gives every cluster
// 10.244.0.0/16).
func PodSubnet(fullName string) string {
	n := subnetIndex(fullName)
	return fmt.Sprintf("10.%d.%d.0/20", 128+n/16, (n%16)*16)
}

// ServiceSubnet is a cluster's service range: one of the 1024 /22 ranges
// of 10.112.0.0/12 by its name (1022 ClusterIPs), so that the routes this
// host adds to the ClusterIPs of clusters side by side do not take each
// other's (kind gives every cluster 10.96.0.0/16).
func ServiceSubnet(fullName string) string {
	n := subnetIndex(fullName)
	return fmt.Sprintf("10.%d.%d.0/22", 112+n/64, (n%64)*4)
}

// subnetIndex is a cluster's index, by its name, among 1024 ranges.
func subnetIndex(fullName string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(fullName))
	return h.Sum32() % 1024
}

// ErrRangesTaken says another meshbench cluster has the pod and service
// ranges a new cluster's name would give it.
var ErrRangesTaken = errors.New("its pod and service ranges are another cluster's")

// rangesFree says whether a new cluster's name gives it ranges none of
// the existing clusters (kind's names, any prefix) has: their routes on
// this host would take each other's.
func rangesFree(fullName string, existing []string) error {
	for _, c := range existing {
		if c != fullName && strings.HasPrefix(c, Prefix) && subnetIndex(c) == subnetIndex(fullName) {
			return fmt.Errorf("cluster %s: %w (%s and %s, from a hash of the name, as %s's): choose another name",
				fullName, ErrRangesTaken, PodSubnet(fullName), ServiceSubnet(fullName), c)
		}
	}
	return nil
}

// RangesFree checks, before anything is made, that a new cluster of that
// name would have ranges of its own (or that it exists already: Create
// then leaves it).
func RangesFree(name string, log Logger) error {
	existing, err := provider(log).List()
	if err != nil {
		return fmt.Errorf("list kind clusters: %w", err)
	}
	if slices.Contains(existing, FullName(name)) {
		return nil // made already, with its ranges: Create leaves it
	}
	return rangesFree(FullName(name), existing)
}

// FreeName is base, or base with the first suffix -2, -3, ... that gives
// a cluster ranges no existing meshbench cluster has.
func FreeName(base string, log Logger) (string, error) {
	existing, err := provider(log).List()
	if err != nil {
		return "", fmt.Errorf("list kind clusters: %w", err)
	}
	name := base
	for i := 2; slices.Contains(existing, FullName(name)) || rangesFree(FullName(name), existing) != nil; i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	return name, nil
}

// Shared returns the host directories every node of a cluster mounts at
// the same path (ClusterOptions.Shares).
func Shared(name string, log Logger) ([]string, error) {
	all, err := provider(log).ListNodes(FullName(name))
	if err != nil {
		return nil, err
	}
	var shared []string
	for i, n := range all {
		out, err := exec.Command("docker", "inspect", "--format", "{{json .Mounts}}", n.String()).Output()
		if err != nil {
			return nil, fmt.Errorf("inspect node %s: %w", n, err)
		}
		var mounts []struct{ Source, Destination string }
		if err := json.Unmarshal(out, &mounts); err != nil {
			return nil, fmt.Errorf("inspect node %s: %w", n, err)
		}
		var here []string
		for _, m := range mounts {
			if m.Source == m.Destination && filepath.IsAbs(m.Source) && m.Source != "/lib/modules" {
				here = append(here, m.Source)
			}
		}
		if i == 0 {
			shared = here
		} else {
			shared = slices.DeleteFunc(shared, func(d string) bool { return !slices.Contains(here, d) })
		}
	}
	return shared, nil
}

// HasImage says whether every node of the cluster has the image (in
// containerd's k8s.io namespace, where kubelet finds it).
func HasImage(name, ref string, log Logger) (bool, error) {
	all, err := provider(log).ListNodes(FullName(name))
	if err != nil {
		return false, err
	}
	for _, n := range all {
		ok, err := nodeHasImage(n, ref)
		if err != nil || !ok {
			return false, err
		}
	}
	return len(all) > 0, nil
}

func nodeHasImage(n nodes.Node, ref string) (bool, error) {
	var out, errOut bytes.Buffer
	if err := n.Command("ctr", "--namespace=k8s.io", "images", "ls", "-q", "name=="+ref).SetStdout(&out).SetStderr(&errOut).Run(); err != nil {
		return false, fmt.Errorf("node %s: ctr images ls: %v: %s", n, err, strings.TrimSpace(errOut.String()))
	}
	return strings.TrimSpace(out.String()) != "", nil
}

// RemoveImage removes an image from every node of the cluster that has it.
func RemoveImage(name, ref string, log Logger) error {
	all, err := provider(log).ListNodes(FullName(name))
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range all {
		ok, err := nodeHasImage(n, ref)
		if err != nil || !ok {
			errs = append(errs, err)
			continue
		}
		var out bytes.Buffer
		if err := n.Command("ctr", "--namespace=k8s.io", "images", "rm", "--sync", ref).SetStdout(&out).SetStderr(&out).Run(); err != nil {
			errs = append(errs, fmt.Errorf("node %s: ctr images rm %s: %v: %s", n, ref, err, strings.TrimSpace(out.String())))
		}
	}
	return errors.Join(errs...)
}

// Create creates the cluster unless it exists (then it says so and
// leaves it), sets up its pod network and waits until every node is Ready.
// It returns whether it created the cluster.
func Create(ctx context.Context, o ClusterOptions) (bool, error) {
	name := FullName(o.Name)
	p := provider(o.Log)
	existing, err := p.List()
	if err != nil {
		return false, fmt.Errorf("list kind clusters: %w", err)
	}
	if slices.Contains(existing, name) {
		// It may be one a killed create left before its pod network:
		// that part is idempotent, and readiness is checked again.
		o.Log.Logf("cluster %s exists; checking its pod network and readiness", name)
		if all, err := p.ListNodes(name); err == nil && len(all) != max(o.Workers, 2)+1 {
			o.Log.Logf("cluster %s has %d nodes, not the %d asked for; delete it to change that", name, len(all), max(o.Workers, 2)+1)
		}
		if err := podNetwork(ctx, p, name, o.Log); err != nil {
			return false, fmt.Errorf("cluster %s: pod network: %w", name, err)
		}
		return false, waitReady(ctx, p, name, readyTimeout(o))
	}
	if err := rangesFree(name, existing); err != nil {
		return false, err
	}
	start := time.Now()
	noteLibModules()
	o.Log.Logf("cluster %s: creating (node image %s, %d workers)", name, o.Image, max(o.Workers, 2))
	err = p.Create(name,
		cluster.CreateWithV1Alpha4Config(Config(o)),
		cluster.CreateWithNodeImage(o.Image),
		cluster.CreateWithRetain(o.Retain),
		cluster.CreateWithKubeconfigPath(o.Kubeconfig),
		cluster.CreateWithDisplayUsage(false),
		cluster.CreateWithDisplaySalutation(false),
	)
	if err != nil {
		return false, fmt.Errorf("create cluster %s: %w", name, err)
	}
	fail := func(err error) (bool, error) {
		if !o.Retain {
			_ = p.Delete(name, o.Kubeconfig)
			return false, fmt.Errorf("cluster %s (deleted): %w", name, err)
		}
		return false, fmt.Errorf("cluster %s (kept: --retain): %w", name, err)
	}
	if err := podNetwork(ctx, p, name, o.Log); err != nil {
		return fail(fmt.Errorf("pod network: %w", err))
	}
	if err := waitReady(ctx, p, name, readyTimeout(o)); err != nil {
		return fail(err)
	}
	o.Log.Logf("cluster %s: ready in %s", name, time.Since(start).Round(time.Second))
	return true, nil
}

func readyTimeout(o ClusterOptions) time.Duration {
	if o.ReadyTimeout <= 0 {
		return 3 * time.Minute
	}
	return o.ReadyTimeout
}

// Delete deletes the cluster; a cluster that does not exist is not an
// error.
func Delete(name, kubeconfig string, log Logger) error {
	p := provider(log)
	if err := p.Delete(FullName(name), kubeconfig); err != nil {
		return err
	}
	if left, err := p.List(); err == nil && len(left) == 0 {
		removeLibModules()
	}
	return nil
}

// libModulesMarker records that /lib/modules did not exist before
// meshbench's first cluster: kind bind-mounts it into every node, and
// Docker creates the (empty) directory on a host that has none.
var libModulesMarker = "/run/meshbench/lib-modules-created-by-kind"

func noteLibModules() {
	if _, err := os.Stat("/lib/modules"); os.IsNotExist(err) {
		_ = os.MkdirAll(filepath.Dir(libModulesMarker), 0o755)
		_ = os.WriteFile(libModulesMarker, nil, 0o644)
	}
}

// removeLibModules removes the directory Docker made for kind, once no
// kind cluster is left, if it is still empty.
func removeLibModules() {
	if _, err := os.Stat(libModulesMarker); err != nil {
		return
	}
	if err := os.Remove("/lib/modules"); err == nil || os.IsNotExist(err) {
		_ = os.Remove(libModulesMarker)
	}
}

// List lists meshbench's clusters (kind clusters with the prefix).
func List(log Logger) ([]string, error) {
	all, err := provider(log).List()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range all {
		if strings.HasPrefix(c, Prefix) {
			out = append(out, c)
		}
	}
	return out, nil
}

// Kubeconfig returns a cluster's kubeconfig (for the host: the API
// server on its published loopback port).
func Kubeconfig(name string, log Logger) (string, error) {
	return provider(log).KubeConfig(FullName(name), false)
}

// LoadImages loads an image archive (docker-save format, written by
// write) into every node's containerd, as 'kind load image-archive' does.
func LoadImages(name string, write func(io.Writer) error, log Logger) error {
	name = FullName(name)
	all, err := provider(log).ListNodes(name)
	if err != nil {
		return err
	}
	if len(all) == 0 {
		return fmt.Errorf("cluster %s does not exist", name)
	}
	f, err := os.CreateTemp("", "meshbench-images-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := write(f); err != nil {
		return err
	}
	for _, n := range all {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if err := nodeutils.LoadImageArchive(n, f); err != nil {
			return fmt.Errorf("load images into %s: %w", n, err)
		}
	}
	return nil
}

// Exists says whether a meshbench cluster of that name exists.
func Exists(name string, log Logger) (bool, error) {
	all, err := provider(log).List()
	if err != nil {
		return false, err
	}
	return slices.Contains(all, FullName(name)), nil
}

// ErrNoAnswer is Answers' error for a cluster whose kubeconfig cannot
// be read or whose API server does not answer through it.
var ErrNoAnswer = errors.New("the cluster does not answer")

// Answers checks, within timeout, that the cluster's API server answers
// through the kubeconfig kind keeps for it: a cluster whose nodes are
// stopped or paused has a kubeconfig that does not work.
func Answers(ctx context.Context, name string, timeout time.Duration, log Logger) error {
	hint := fmt.Sprintf("are its nodes running? docker ps -a --filter label=io.x-k8s.kind.cluster=%s", FullName(name))
	cfg, err := Kubeconfig(name, log)
	if err != nil {
		return fmt.Errorf("cluster %s: %w: its kubeconfig cannot be read (%s): %v", FullName(name), ErrNoAnswer, hint, err)
	}
	c, err := NewClient([]byte(cfg))
	if err != nil {
		return fmt.Errorf("cluster %s: %w", FullName(name), err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := c.cs.CoreV1().RESTClient().Get().AbsPath("/version").DoRaw(ctx); err != nil {
		return fmt.Errorf("cluster %s: %w within %s (%s): %v", FullName(name), ErrNoAnswer, timeout, hint, err)
	}
	return nil
}

// clientset is a client of the cluster's API server (on the host's
// loopback port kind publishes).
func clientset(p *cluster.Provider, name string) (kubernetes.Interface, error) {
	cfg, err := p.KubeConfig(name, false)
	if err != nil {
		return nil, err
	}
	c, err := NewClient([]byte(cfg))
	if err != nil {
		return nil, err
	}
	return c.cs, nil
}

// cniConfig is a node's pod network, as kindnetd writes it: a veth pair
// per pod (ptp, which kind's upstream node image and Debian's plugins both
// have) with host-local addresses from the node's pod range. Pods reach
// other nodes' pods through the routes podNetwork adds, unmasqueraded
// (the Kubernetes network model: no NAT between pods).
const cniConfig = `{
  "cniVersion": "0.4.0",
  "name": "meshbench",
  "plugins": [
    {"type": "ptp", "ipMasq": false, "mtu": 1500,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "%s"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`

// podNetwork writes each node's CNI configuration for its pod range and
// routes every other node's range through that node, once the controller
// manager has given every node a range.
func podNetwork(ctx context.Context, p *cluster.Provider, name string, log Logger) error {
	all, err := p.ListNodes(name)
	if err != nil {
		return err
	}
	cs, err := clientset(p, name)
	if err != nil {
		return err
	}
	var l *corev1.NodeList
	var last error
	err = wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, last = cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		return last == nil && len(l.Items) == len(all) &&
			!slices.ContainsFunc(l.Items, func(n corev1.Node) bool { return n.Spec.PodCIDR == "" }), nil
	})
	if err != nil {
		return fmt.Errorf("not every node has a pod range after 2m: %v (%v)", err, last)
	}
	cidr, addr := map[string]string{}, map[string]string{}
	for _, n := range l.Items {
		cidr[n.Name] = n.Spec.PodCIDR
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP && !strings.Contains(a.Address, ":") {
				addr[n.Name] = a.Address
			}
		}
	}
	for _, n := range all {
		self := n.String()
		if cidr[self] == "" {
			return fmt.Errorf("node %s is not in the API's node list", self)
		}
		if err := nodeutils.WriteFile(n, "/etc/cni/net.d/10-meshbench.conflist", fmt.Sprintf(cniConfig, cidr[self])); err != nil {
			return fmt.Errorf("node %s: CNI configuration: %w", self, err)
		}
		for other, c := range cidr {
			if other == self {
				continue
			}
			if err := n.Command("ip", "route", "replace", c, "via", addr[other]).Run(); err != nil {
				return fmt.Errorf("node %s: route to %s's pods (%s via %s): %w", self, other, c, addr[other], err)
			}
		}
		log.Logf("node %s: pods in %s", self, cidr[self])
	}
	return nil
}

// waitReady waits until every node reports Ready and cluster DNS serves
// (CoreDNS starts before the pod network does, and backs off).
func waitReady(ctx context.Context, p *cluster.Provider, name string, timeout time.Duration) error {
	cs, err := clientset(p, name)
	if err != nil {
		return err
	}
	last := "no answer yet"
	err = wait.PollUntilContextTimeout(ctx, 2*time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		l, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		for _, n := range l.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
					last = n.Name + ": " + c.Message
					return false, nil
				}
			}
		}
		d, err := cs.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		if d.Spec.Replicas == nil || d.Status.ReadyReplicas < *d.Spec.Replicas {
			last = fmt.Sprintf("coredns: %d replicas ready", d.Status.ReadyReplicas)
			return false, nil
		}
		return len(l.Items) > 0, nil
	})
	if err != nil {
		return fmt.Errorf("cluster not ready after %s: %s", timeout, last)
	}
	return nil
}

// kindLogger passes kind's warnings and errors on, and its info lines at
// verbosity 0 (its steps).
type kindLogger struct{ l Logger }

func (k kindLogger) Warn(m string)                        { k.l.Logf("kind: %s", m) }
func (k kindLogger) Warnf(f string, a ...any)             { k.l.Logf("kind: "+f, a...) }
func (k kindLogger) Error(m string)                       { k.l.Logf("kind: %s", m) }
func (k kindLogger) Errorf(f string, a ...any)            { k.l.Logf("kind: "+f, a...) }
func (k kindLogger) V(v kindlog.Level) kindlog.InfoLogger { return kindInfo{k.l, v == 0} }

type kindInfo struct {
	l  Logger
	on bool
}

func (i kindInfo) Info(m string) {
	if i.on {
		i.l.Logf("kind: %s", strings.TrimSpace(m))
	}
}

func (i kindInfo) Infof(f string, a ...any) {
	if i.on {
		i.l.Logf("kind: "+strings.TrimSpace(f), a...)
	}
}

func (i kindInfo) Enabled() bool { return i.on }
