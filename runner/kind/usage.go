package kind

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshbench/meshbench/runner/results"
)

// Client talks to a cluster's API server.
type Client struct {
	cs kubernetes.Interface
	// watchClient has no overall request timeout, for watches (which
	// the 30 s bound of cs would cut).
	watchClient kubernetes.Interface
}

// NewClient makes a client from a kubeconfig's contents.
func NewClient(kubeconfig []byte) (*Client, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return newClient(cfg)
}

// newClient makes a client from a REST configuration (which it changes).
func newClient(cfg *rest.Config) (*Client, error) {
	wcs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 30 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Client{cs: cs, watchClient: wcs}, nil
}

// Clientset is the typed client.
func (c *Client) Clientset() kubernetes.Interface { return c.cs }

// Summary is what meshbench reads of the kubelet's summary API
// (k8s.io/kubelet/pkg/apis/stats/v1alpha1).
type Summary struct {
	Node struct {
		NodeName string `json:"nodeName"`
	} `json:"node"`
	Pods []struct {
		PodRef struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"podRef"`
		Containers []ContainerStats `json:"containers"`
	} `json:"pods"`
}

// ContainerStats are one container's figures.
type ContainerStats struct {
	Name string `json:"name"`
	CPU  *struct {
		Time                 time.Time `json:"time"`
		UsageNanoCores       *uint64   `json:"usageNanoCores"`
		UsageCoreNanoSeconds *uint64   `json:"usageCoreNanoSeconds"`
	} `json:"cpu"`
	Memory *struct {
		Time            time.Time `json:"time"`
		WorkingSetBytes *uint64   `json:"workingSetBytes"`
		RSSBytes        *uint64   `json:"rssBytes"`
	} `json:"memory"`
}

// Summary reads a node's kubelet summary through the API server's node
// proxy: no metrics-server needed.
func (c *Client) Summary(ctx context.Context, node string) (*Summary, error) {
	raw, err := c.cs.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", node, "proxy", "stats", "summary").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("kubelet summary of %s: %w", node, err)
	}
	var s Summary
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("kubelet summary of %s: %w", node, err)
	}
	return &s, nil
}

// Container names a container of a pod on a node, with the component it
// runs (for the usage record).
type Container struct {
	Node, Namespace, Pod, Name string
	Component, Class           string
	// MeshNode is the meshbench node whose pod it is in, when it is a
	// run's (else the pod names it).
	MeshNode string
}

func (c *Client) stats(ctx context.Context, cs []Container) []*ContainerStats {
	out := make([]*ContainerStats, len(cs))
	byNode := map[string]*Summary{}
	for i, ref := range cs {
		s, ok := byNode[ref.Node]
		if !ok {
			s, _ = c.Summary(ctx, ref.Node)
			byNode[ref.Node] = s
		}
		if s == nil {
			continue
		}
		for _, p := range s.Pods {
			if p.PodRef.Name != ref.Pod || p.PodRef.Namespace != ref.Namespace {
				continue
			}
			for j := range p.Containers {
				if p.Containers[j].Name == ref.Name {
					out[i] = &p.Containers[j]
				}
			}
		}
	}
	return out
}

// UsageSource names where kind's figures come from, in results.
const UsageSource = "kubelet summary API"

// MeterUsage opens a usage window over containers. CPU is the change of
// the containers' cumulative CPU time between the first and last samples
// the kubelet published within the window, over the time between those
// samples (its own timestamps: cAdvisor refreshes them every few seconds,
// so a window shorter than that has the kubelet's rate instead); memory is
// the working set and RSS sampled every interval.
func (c *Client) MeterUsage(ctx context.Context, cs []Container, interval time.Duration) func() []results.Usage {
	first := c.stats(ctx, cs)
	type memSample struct{ ws, rss []float64 }
	mem := make([]memSample, len(cs))
	var mu sync.Mutex
	record := func(st []*ContainerStats) {
		mu.Lock()
		defer mu.Unlock()
		for i, s := range st {
			if s == nil || s.Memory == nil {
				continue
			}
			if s.Memory.WorkingSetBytes != nil {
				mem[i].ws = append(mem[i].ws, float64(*s.Memory.WorkingSetBytes)/(1<<20))
			}
			if s.Memory.RSSBytes != nil {
				mem[i].rss = append(mem[i].rss, float64(*s.Memory.RSSBytes)/(1<<20))
			}
		}
	}
	record(first)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				record(c.stats(ctx, cs))
			}
		}
	}()
	return func() []results.Usage {
		close(stop)
		wg.Wait()
		last := c.stats(ctx, cs)
		record(last)
		out := make([]results.Usage, len(cs))
		for i, ref := range cs {
			u := results.Usage{Name: ref.Component, Class: ref.Class, Node: cmp.Or(ref.MeshNode, ref.Pod), Pod: ref.Pod, Host: ref.Node, Source: UsageSource}
			u.CPUMillicores = cpuMillicores(first[i], last[i])
			u.WorkingSetMeanMB, u.WorkingSetMaxMB = meanMax(mem[i].ws)
			u.RSSMeanMB, u.RSSMaxMB = meanMax(mem[i].rss)
			out[i] = u
		}
		return out
	}
}

// cpuMillicores is the CPU rate between two samples, or the kubelet's own
// rate when they are the same sample.
func cpuMillicores(a, b *ContainerStats) float64 {
	if a == nil || b == nil || a.CPU == nil || b.CPU == nil {
		return 0
	}
	if a.CPU.UsageCoreNanoSeconds != nil && b.CPU.UsageCoreNanoSeconds != nil {
		if dt := b.CPU.Time.Sub(a.CPU.Time).Seconds(); dt > 0 {
			return float64(*b.CPU.UsageCoreNanoSeconds-*a.CPU.UsageCoreNanoSeconds) / dt / 1e6
		}
	}
	if b.CPU.UsageNanoCores != nil {
		return float64(*b.CPU.UsageNanoCores) / 1e6
	}
	return 0
}

func meanMax(v []float64) (mean, mx float64) {
	for _, x := range v {
		mean += x
		mx = max(mx, x)
	}
	if len(v) > 0 {
		mean /= float64(len(v))
	}
	return mean, mx
}

// RunningContainers lists the running containers of a namespace's pods.
func (c *Client) RunningContainers(ctx context.Context, namespace string) ([]Container, error) {
	pods, err := c.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []Container
	for _, p := range pods.Items {
		for _, st := range p.Status.ContainerStatuses {
			if st.State.Running == nil {
				continue
			}
			out = append(out, Container{Node: p.Spec.NodeName, Namespace: p.Namespace, Pod: p.Name, Name: st.Name,
				Component: p.Name + "/" + st.Name})
		}
	}
	return out, nil
}
