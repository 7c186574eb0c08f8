package kind

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshbench/meshbench/runner/kind/images"
	"github.com/meshbench/meshbench/runner/kind/podproc"
)

// KubeTarget is a cluster the kube platform runs on: any cluster a
// kubeconfig reaches. The platform creates nothing in it but the run's
// namespace (and, on a node lacking the results directory, the kubelet
// creates an empty one), and loads no images and adds no routes: the
// cluster must already hold the pods' image, mount the results directory
// on its nodes at the same path, and be routed from this host to its
// pods. Each is checked as the pods start, before the first trial, and
// refused with ErrUnfit.
type KubeTarget struct {
	// Kubeconfig is the kubeconfig file, or files joined as in
	// $KUBECONFIG ("": $KUBECONFIG, else ~/.kube/config, as kubectl reads
	// them); Context its context to use ("": its current context).
	Kubeconfig string `json:"kubeconfig,omitempty"`
	Context    string `json:"context,omitempty"`
	// Cluster and Server are the context's cluster's name and API
	// server, as ResolveKube found them: a client of a target whose
	// kubeconfig now names another server is refused.
	Cluster string `json:"cluster,omitempty"`
	Server  string `json:"server,omitempty"`
}

// ErrUnfit says the cluster a kube run was given lacks something the
// platform needs (and does not set up itself): the run's input, not a
// failure of the run.
var ErrUnfit = errors.New("the cluster does not fit the kube platform")

// Bounds of the checks of a kube cluster: that this host reaches a pod,
// and how long after a pod's share check ended its file may take to show
// on this host.
const (
	reachTimeout = 5 * time.Second
	shareGrace   = 3 * time.Second
)

// ResolveKube pins a target down as it is now: the kubeconfig's files as
// absolute paths, its context by name, the context's cluster and server.
// A run and the start that cleans up after it then reach the same
// cluster whatever $KUBECONFIG or the current context say by then.
func ResolveKube(t KubeTarget) (KubeTarget, error) {
	var files []string
	if t.Kubeconfig != "" {
		files = filepath.SplitList(t.Kubeconfig)
	} else {
		// As kubectl: the files of $KUBECONFIG that exist.
		for _, f := range clientcmd.NewDefaultClientConfigLoadingRules().GetLoadingPrecedence() {
			if _, err := os.Stat(f); err == nil {
				files = append(files, f)
			}
		}
	}
	var abs []string
	for _, f := range files {
		a, err := filepath.Abs(f)
		if err != nil {
			return t, err
		}
		abs = append(abs, a)
	}
	cc := kubeClientConfig(abs, t.Context)
	raw, err := cc.RawConfig()
	if err != nil {
		return t, fmt.Errorf("kubeconfig: %w", err)
	}
	known := slices.Sorted(maps.Keys(raw.Contexts))
	if len(known) == 0 {
		where := t.Kubeconfig
		if where == "" {
			where = "$KUBECONFIG (or ~/.kube/config where it is unset)"
		}
		return t, fmt.Errorf("no kubeconfig context in %s", where)
	}
	ctxName := t.Context
	if ctxName == "" {
		if ctxName = raw.CurrentContext; ctxName == "" {
			return t, fmt.Errorf("the kubeconfig has no current context: name one with --context (it has: %s)", strings.Join(known, ", "))
		}
	}
	kc, ok := raw.Contexts[ctxName]
	if !ok {
		return t, fmt.Errorf("the kubeconfig has no context %q (it has: %s)", ctxName, strings.Join(known, ", "))
	}
	cfg, err := cc.ClientConfig()
	if err != nil {
		return t, fmt.Errorf("kubeconfig, context %s: %w", ctxName, err)
	}
	out := KubeTarget{Kubeconfig: strings.Join(abs, string(filepath.ListSeparator)), Context: ctxName, Cluster: kc.Cluster, Server: cfg.Host}
	if out.Cluster == "" {
		out.Cluster = cfg.Host
	}
	return out, nil
}

func kubeClientConfig(files []string, context string) clientcmd.ClientConfig {
	rules := &clientcmd.ClientConfigLoadingRules{Precedence: files}
	if len(files) == 1 {
		// Named: its absence is an error.
		rules = &clientcmd.ClientConfigLoadingRules{ExplicitPath: files[0]}
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context})
}

// KubeClient is a client of a target ResolveKube returned.
func KubeClient(t KubeTarget) (*Client, error) {
	cfg, err := kubeClientConfig(filepath.SplitList(t.Kubeconfig), t.Context).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s, context %s: %w", t.Kubeconfig, t.Context, err)
	}
	if cfg.Host != t.Server {
		return nil, fmt.Errorf("kubeconfig %s: context %s now names the API server %s, not %s", t.Kubeconfig, t.Context, cfg.Host, t.Server)
	}
	return newClient(cfg)
}

// KubeAnswers checks that the target's API server answers within timeout
// (and takes the kubeconfig's credentials).
func KubeAnswers(ctx context.Context, c *Client, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := c.cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{Limit: 1})
	switch {
	case err == nil:
		return nil
	case apierrors.IsUnauthorized(err) || apierrors.IsForbidden(err):
		return fmt.Errorf("the API server refuses the kubeconfig's credentials: %v", err)
	}
	return fmt.Errorf("%w within %s: %v", ErrNoAnswer, timeout, err)
}

// imageMissing says why a pod's image is not on its node (the kubelet's
// ErrImageNeverPull), or "".
func imageMissing(pod *corev1.Pod) string {
	for _, s := range append(slices.Clone(pod.Status.InitContainerStatuses), pod.Status.ContainerStatuses...) {
		if w := s.State.Waiting; w != nil && w.Reason == "ErrImageNeverPull" {
			return w.Message
		}
	}
	return ""
}

// noImage is the kube platform's error for a node without the pods'
// image.
func (p *platform) noImage(node string, pod *corev1.Pod, why string) error {
	return fmt.Errorf("%w: node %s's pod %s: the pods' image %s is not on %s (%s), and the kube platform pulls and loads nothing: put it on the nodes first ('meshbench cluster build-image --output FILE' writes it for this build; then 'kind load image-archive FILE', or 'ctr -n k8s.io images import FILE' on each node; 'meshbench cluster build-image --cluster NAME' for a meshbench cluster)",
		ErrUnfit, node, pod.Name, p.o.Image, pod.Spec.NodeName, why)
}

// byRole says both meshbench roles have nodes labelled with them, so
// that pods are placed by role.
func byRole(nodes []corev1.Node) bool {
	var lg, sut bool
	for _, n := range nodes {
		lg = lg || n.Labels[RoleLabel] == RoleLoadGen
		sut = sut || n.Labels[RoleLabel] == RoleSUT
	}
	return lg && sut
}

// shareCheck is the init container of a kube run's node pod: the process
// wrapper runs `meshbench version` with the control directory as its
// control directory, which it can only do where the node mounts the
// results directory (the platform made the control directory in it), and
// the platform then finds its exit report, named for the pod (the
// kubelet expands $(POD_NAME): a controller's pods share one template),
// on this host: the share works both ways.
func (p *platform) shareCheck() corev1.Container {
	return corev1.Container{
		Name: "share-check", Image: p.o.Image, ImagePullPolicy: corev1.PullNever,
		Command: append(p.wrapper("--control", p.ctl, "--name", shareCheckName("$(POD_NAME)"), "--"), images.BinaryPath, "version"),
		Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
		VolumeMounts:             []corev1.VolumeMount{{Name: "share", MountPath: p.o.Share}},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

func shareCheckName(pod string) string { return "share-check-" + pod }

// checkShared says whether a node pod's share check, once it ended,
// passed: its exit report is on this host. (nil while it has not ended:
// whatever holds the pod up is another matter.)
func (p *platform) checkShared(node string, pod *corev1.Pod) error {
	var ended *corev1.ContainerStateTerminated
	for _, s := range pod.Status.InitContainerStatuses {
		if s.Name == "share-check" {
			// (A controller's pod runs it again after a failure:
			// the last one ended.)
			ended = cmp.Or(s.State.Terminated, s.LastTerminationState.Terminated)
		}
	}
	if ended == nil {
		return nil
	}
	// A few seconds' grace: a network share may show the file late.
	exit := filepath.Join(p.ctl, shareCheckName(pod.Name)) + podproc.CtlExit
	for deadline := time.Now().Add(shareGrace); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(exit); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			break
		}
	}
	why := ""
	if ended.ExitCode != 0 {
		why = fmt.Sprintf(" (in the pod, the check ended with exit code %d: %s)", ended.ExitCode, strings.TrimSpace(ended.Message))
	}
	return fmt.Errorf("%w: node %s (pod %s on %s) does not share the results directory %s with this host%s: the pods read their configuration and write their results there, so every node must mount it at the same path (a kind cluster: extraMounts, or 'meshbench cluster create --share DIR'; k3s or minikube on this host see it as it is)",
		ErrUnfit, node, pod.Name, pod.Spec.NodeName, p.o.Share, why)
}

// checkFit checks what the kube platform needs of a node pod once
// waitRunning returned it (or failed with err, when its share check may
// say why): the results directory shared, this host reaching the pod.
func (p *platform) checkFit(ctx context.Context, node string, pod *corev1.Pod, err error) error {
	if pod == nil {
		if pod, _ = p.podOf(ctx, node); pod == nil {
			return nil // err says what there is to say
		}
	}
	if serr := p.checkShared(node, pod); serr != nil || err != nil {
		return serr
	}
	return checkReach(ctx, node, pod)
}

// checkReach says whether this host reaches a pod: a connection to a
// port nothing listens on is refused by the pod's kernel when the packets
// get there; it times out, or fails otherwise, when they do not.
func checkReach(ctx context.Context, node string, pod *corev1.Pod) error {
	d := net.Dialer{Timeout: reachTimeout}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(pod.Status.PodIP, "1"))
	if err == nil {
		conn.Close()
		return nil
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%w: this host does not reach node %s's pod %s at %s (%v): the runner probes the pods directly, so this host must be routed to the cluster's pod network (a kind cluster: ip route add <a node's podCIDR> via <its address>, for every node)",
		ErrUnfit, node, pod.Name, pod.Status.PodIP, err)
}
