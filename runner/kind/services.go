package kind

// The topology's services as Kubernetes Services: a ClusterIP over each
// service's pods, which kube-proxy balances, as in a cluster a mesh is
// installed in.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/meshbench/meshbench/runner"
)

// AppLabel names the service a pod is one of: the selector of the
// service's Kubernetes Service.
const AppLabel = "meshbench.dev/app"

// endpointsTimeout bounds the wait for a Service's endpoints to list
// every pod.
const endpointsTimeout = time.Minute

var _ runner.ServiceNetwork = (*platform)(nil)

// Expose labels each service's pods with it, creates a ClusterIP Service
// selecting them (publishing pods not ready: see Prepare), waits until its
// EndpointSlices list every pod, and
// routes the ClusterIP from this host through a node (recorded, as the pod
// ranges are) so that the runner's probes reach it. On kube it adds no
// route, and creates the Services only where this host reaches the
// cluster's ClusterIPs (unroutedServices): it is one of the nodes, or it
// routes the service range through one. An unrouted ClusterIP would be
// dialed through this host's default route. Else the services
// are dialed at their first pod, and meshbench's own rules spread a
// replicated one, as locally.
func (p *platform) Expose(ctx context.Context, svcs []runner.ServiceSpec) (map[string]netip.Addr, error) {
	var via string
	var err error
	if p.kube() {
		if why := p.unroutedServices(ctx); why != "" {
			p.o.Log.Logf("services: none created on kube: %s, and the runner probes each ClusterIP from here; callers dial a service's first pod (a route from this host to the range through a node, or running meshbench on a node, makes them Services)", why)
			return nil, nil
		}
	} else if via, err = p.serviceVia(ctx); err != nil {
		return nil, err
	}
	cs := p.client.cs
	out := map[string]netip.Addr{}
	for _, s := range svcs {
		name := serviceName(s.Name)
		patch := fmt.Appendf(nil, `{"metadata":{"labels":{%q:%q}}}`, AppLabel, name)
		for _, n := range s.Pods {
			p.mu.Lock()
			pod := p.pods[n]
			p.mu.Unlock()
			if pod == nil {
				return nil, fmt.Errorf("service %s: node %s has no pod", s.Name, n)
			}
			if _, err := cs.CoreV1().Pods(p.ns).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				return nil, fmt.Errorf("service %s: label pod %s: %w", s.Name, pod.Name, err)
			}
		}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: p.ns, Labels: map[string]string{RunLabel: p.o.RunID}},
			Spec: corev1.ServiceSpec{
				Type:     corev1.ServiceTypeClusterIP,
				Selector: map[string]string{AppLabel: name},
				// A pod made for a deployment (Prepare) is not ready
				// until its redirect is in, after the runner has probed
				// the Service through it; a node's holder pod always is.
				PublishNotReadyAddresses: true,
				Ports: []corev1.ServicePort{{Name: "serve", Protocol: corev1.ProtocolTCP, Port: int32(s.Port),
					TargetPort: intstr.FromInt32(int32(s.Port))}},
			},
		}
		if svc, err = cs.CoreV1().Services(p.ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("service %s: create its Service: %w", s.Name, err)
		}
		addr, err := netip.ParseAddr(svc.Spec.ClusterIP)
		if err != nil || !addr.Is4() {
			return nil, fmt.Errorf("service %s: Service %s has ClusterIP %q, not an IPv4 address", s.Name, name, svc.Spec.ClusterIP)
		}
		p.mu.Lock()
		p.backends[s.Name] = slices.Clone(s.Pods)
		p.mu.Unlock()
		if err := p.waitEndpoints(ctx, name, p.serviceAddrs(name)); err != nil {
			return nil, fmt.Errorf("service %s: %w", s.Name, err)
		}
		if via != "" {
			if err := p.route(ctx, []string{addr.String() + "/32", "via", via}); err != nil {
				return nil, fmt.Errorf("service %s: %w", s.Name, err)
			}
		}
		out[s.Name] = addr
		p.mu.Lock()
		p.services[s.Name] = addr.String()
		p.mu.Unlock()
		p.o.Log.Logf("service %s: Service %s, ClusterIP %s, %d pods", s.Name, name, addr, len(s.Pods))
	}
	return out, nil
}

// unroutedServices says why this host does not reach the cluster's
// ClusterIPs, or "" when it does: the first and last ClusterIPs of every
// IPv4 range of its ServiceCIDRs (networking.k8s.io/v1, Kubernetes 1.33
// and later) are routed, by `ip route get` (which follows this host's rules and
// tables), through one of the cluster's nodes, whose kube-proxy
// translates it. A route through anything else (the default route, a
// VPN's) would send the runner's probes off this host.
func (p *platform) unroutedServices(ctx context.Context) string {
	l, err := p.client.cs.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Sprintf("the cluster's service range is unknown (its ServiceCIDRs: %v)", err)
	}
	var ranges []netip.Prefix
	for _, sc := range l.Items {
		for _, c := range sc.Spec.CIDRs {
			if r, err := netip.ParsePrefix(c); err == nil && r.Addr().Is4() {
				ranges = append(ranges, r.Masked())
			}
		}
	}
	if len(ranges) == 0 {
		return "the cluster lists no IPv4 service range (ServiceCIDR)"
	}
	nodes, err := p.client.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Sprintf("the cluster's nodes: %v", err)
	}
	var ips []string
	for _, n := range nodes.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ips = append(ips, a.Address)
			}
		}
	}
	local, err := hostAddrs()
	if err != nil {
		return fmt.Sprintf("this host's addresses: %v", err)
	}
	if n := nodeOf(nodes.Items, local); n != "" {
		// k3s, kubeadm on this host, or meshbench run on a node: the
		// node's own kube-proxy (or its replacement) translates the
		// ClusterIPs this host dials, before its routes are looked at
		// again, whatever they say. An address alone could be another
		// host's (the same private address behind NAT or a VPN), so the
		// API server's own ClusterIP must take a connection from here.
		why := p.dialsAPIServer(ctx)
		if why == "" {
			p.o.Log.Logf("services: this host is the cluster's node %s, whose kube-proxy translates the ClusterIPs it dials", n)
			return ""
		}
		p.o.Log.Logf("services: this host has the address of the cluster's node %s, but %s: its routes decide", n, why)
	}
	for _, r := range ranges {
		// Its first and last ClusterIPs (a route elsewhere in between,
		// more specific still, goes unseen).
		for _, a := range []netip.Addr{r.Addr().Next(), lastAddr(r).Prev()} {
			out, err := runIP(ctx, "-j", "-4", "route", "get", a.String())
			if err != nil {
				return fmt.Sprintf("this host has no route to its service range %s (ip route get %s: %s)", r, a, out)
			}
			if why := routeWhy(r, []byte(out), ips); why != "" {
				return why
			}
		}
	}
	return ""
}

// apiDialTimeout bounds the connection to the API server's ClusterIP.
const apiDialTimeout = 3 * time.Second

// dialsAPIServer says why a connection from this host to the API server's
// ClusterIP (Service default/kubernetes) is not made, or "" when it is.
func (p *platform) dialsAPIServer(ctx context.Context) string {
	svc, err := p.client.cs.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		return fmt.Sprintf("the API server's Service default/kubernetes: %v", err)
	}
	if len(svc.Spec.Ports) == 0 {
		return "the API server's Service default/kubernetes has no port"
	}
	addr := net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(svc.Spec.Ports[0].Port)))
	d := net.Dialer{Timeout: apiDialTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Sprintf("a connection to the API server's ClusterIP %s fails (%v)", addr, err)
	}
	conn.Close()
	return ""
}

// hostAddrs are this host's addresses (of every link, up or not).
func hostAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range as {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out, nil
}

// nodeOf names the node one of whose InternalIPs is among local (this
// host's addresses), or "". Loopback addresses name no node: a node
// would not be known by one.
func nodeOf(nodes []corev1.Node, local []netip.Addr) string {
	for _, n := range nodes {
		for _, a := range n.Status.Addresses {
			ip, err := netip.ParseAddr(a.Address)
			if a.Type == corev1.NodeInternalIP && err == nil && !ip.IsLoopback() && slices.Contains(local, ip.Unmap()) {
				return n.Name
			}
		}
	}
	return ""
}

// lastAddr is an IPv4 range's last address.
func lastAddr(r netip.Prefix) netip.Addr {
	b := r.Masked().Addr().As4()
	for i := r.Bits(); i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(b)
}

// routeWhy says why the route `ip -j route get` gave for an address of
// the range r (js) does not go through one of the nodes (their
// addresses), or "".
func routeWhy(r netip.Prefix, js []byte, nodes []string) string {
	var routes []struct{ Gateway, Dev string }
	if err := json.Unmarshal(js, &routes); err != nil || len(routes) != 1 {
		return fmt.Sprintf("ip route get in %s: %q (%v)", r, js, err)
	}
	switch gw := routes[0].Gateway; {
	case gw == "":
		return fmt.Sprintf("this host routes its service range %s to its link %s, not through one of its nodes", r, routes[0].Dev)
	case !slices.Contains(nodes, gw):
		return fmt.Sprintf("this host routes its service range %s through %s, which is none of its nodes (%s)", r, gw, strings.Join(nodes, ", "))
	}
	return ""
}

// serviceName is a service's Kubernetes Service name: its own, which must
// start with a letter (DNS-1035), else prefixed.
func serviceName(s string) string {
	if len(validation.IsDNS1035Label(s)) == 0 {
		return s
	}
	return dnsLabel("svc-" + s)
}

// serviceVia is the node this host routes ClusterIPs through: the first
// with an address (every node's kube-proxy translates them).
func (p *platform) serviceVia(ctx context.Context) (string, error) {
	l, err := p.client.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	for _, n := range l.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP && !strings.Contains(a.Address, ":") {
				return a.Address, nil
			}
		}
	}
	return "", fmt.Errorf("cluster %s: no node has an IPv4 address to route its ClusterIPs through", p.clusterName())
}

// waitEndpoints waits until the Service's EndpointSlices list exactly
// the pods' addresses, ready.
func (p *platform) waitEndpoints(ctx context.Context, name string, addrs []string) error {
	var ready []string
	var last error
	want := slices.Sorted(slices.Values(addrs))
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, endpointsTimeout, true, func(ctx context.Context) (bool, error) {
		l, err := p.client.cs.DiscoveryV1().EndpointSlices(p.ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
		if last = err; err != nil {
			return false, nil
		}
		ready = nil
		for _, sl := range l.Items {
			for _, ep := range sl.Endpoints {
				if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
					ready = append(ready, ep.Addresses...)
				}
			}
		}
		slices.Sort(ready)
		return slices.Equal(ready, want), nil
	})
	if err != nil {
		return fmt.Errorf("Service %s: its ready endpoints are %v, not its pods' %v, after %s (%v)", name, ready, want, endpointsTimeout, cmpErr(last, err))
	}
	return nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
