package meshbench

import (
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	accessv1alpha3 "github.com/servicemeshinterface/smi-sdk-go/pkg/apis/access/v1alpha3"
	splitv1alpha4 "github.com/servicemeshinterface/smi-sdk-go/pkg/apis/split/v1alpha4"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/meshes/internal/meshtest"
	"github.com/meshbench/meshbench/proxy"
	"github.com/meshbench/meshbench/proxy/controlplane"
	"github.com/meshbench/meshbench/proxy/xds"
	"github.com/meshbench/meshbench/scenarios"
)

// served is the configuration the deployment's control plane serves the
// proxy component c, which must take it from that control plane.
func served(t *testing.T, dep *meshes.Deployment, c meshes.Component) *proxy.Config {
	t.Helper()
	cp := dep.ControlPlane
	if cp == nil || cp.Class != "control-plane" || cp.Args[0] != "control-plane" || cp.Args[1] != "--model" || cp.Status == "" {
		t.Fatalf("control plane %+v", cp)
	}
	xdsAddr := cp.Args[slices.Index(cp.Args, "--listen")+1]
	if i := slices.Index(c.Args, "--ads"); i < 0 || c.Args[i+1] != xdsAddr || c.Args[slices.Index(c.Args, "--node")+1] != c.Name {
		t.Fatalf("%s does not take its configuration from the control plane at %s as node %s: %v", c.Name, xdsAddr, c.Name, c.Args)
	}
	_, bundles, err := controlplane.ReadModel(cp.Args[2])
	if err != nil {
		t.Fatal(err)
	}
	b := bundles[c.Name]
	if b == nil {
		t.Fatalf("the control plane has no configuration for node %s", c.Name)
	}
	cfg, err := xds.Translate(b, c.Name, "")
	if err != nil {
		t.Fatalf("%s: served config does not load: %v", c.Name, err)
	}
	return cfg
}

func id(name string) string { return "spiffe://meshbench.local/ns/default/sa/" + name }

// TestSidecarRendersEveryEdge checks, for every topology shape, that each
// workload's sidecar has an outbound cluster per callee (mutual TLS
// accepting only that callee) and each service's sidecar an inbound
// listener accepting only its callers.
func TestSidecarRendersEveryEdge(t *testing.T) {
	for shape := range meshtest.Shapes {
		for _, netns := range []bool{true, false} {
			env := meshtest.Env(t.TempDir(), shape, netns)
			dep, err := New("v").Deploy(env, scenarios.Sidecar)
			if err != nil {
				t.Fatal(err)
			}
			if len(dep.Components) != len(env.Workloads()) || dep.Target.Host != "svc-0:8080" {
				t.Fatalf("%s: deployment = %+v", shape, dep)
			}
			if want := "http://" + meshes.HostPort(env.Client.Node.Local, OutboundPort) + "/"; dep.Target.URL != want {
				t.Errorf("target %s, want %s", dep.Target.URL, want)
			}
			for i, w := range env.Workloads() {
				c := dep.Components[i]
				if c.Name != w.Name+"-sidecar" || c.Class != "proxy" || !strings.HasSuffix(c.Ready.HTTPGet, "/ready") || c.Args[0] != "proxy" {
					t.Errorf("component %+v", c)
				}
				cfg := served(t, dep, c)
				callees := env.Callees(w)
				for _, callee := range callees {
					i := slices.IndexFunc(cfg.Clusters, func(cl proxy.Cluster) bool { return cl.Name == outboundCluster(callee) })
					if i < 0 {
						t.Errorf("%s %s: no cluster for %s", shape, c.Name, callee.Name)
						continue
					}
					cl := cfg.Clusters[i]
					// An endpoint per pod of the callee: mTLS to its
					// sidecars, which share the service's identity.
					var eps []string
					for _, pod := range callee.Pods() {
						eps = append(eps, meshes.HostPort(pod.Node.Addr, InboundPort))
					}
					var got []string
					for _, ep := range cl.Endpoints {
						got = append(got, ep.Address)
					}
					if !slices.Equal(got, eps) || cl.TLS == nil || !slices.Equal(cl.TLS.AllowedIDs, []string{id(callee.Name)}) {
						t.Errorf("%s %s: cluster %+v: want mTLS to %s's sidecars %v only", shape, c.Name, cl, callee.Name, eps)
					}
					// A replicated callee's pods: retried elsewhere and
					// ejected when they keep failing.
					if (cl.Outlier != nil) != (len(callee.Replicas) > 0) {
						t.Errorf("%s %s: cluster %s outlier detection %+v with %d replicas", shape, c.Name, cl.Name, cl.Outlier, len(callee.Replicas))
					}
				}
				var callers []string
				for _, caller := range env.Callers(w.Account()) {
					if !slices.Contains(callers, id(caller.Account())) {
						callers = append(callers, id(caller.Account()))
					}
				}
				if _, isService := env.ServiceOf(w); !isService {
					callers = nil
				}
				for _, l := range cfg.Listeners {
					if l.Direction == proxy.Inbound && (l.TLS == nil || !slices.Equal(l.TLS.AllowedIDs, callers)) {
						t.Errorf("%s %s: inbound listener accepts %v, want exactly the callers %v", shape, c.Name, l.TLS, callers)
					}
				}
				if want := min(len(callees), 1) + min(len(callers), 1); len(cfg.Listeners) != want {
					t.Errorf("%s %s: %d listeners, want %d", shape, c.Name, len(cfg.Listeners), want)
				}
			}
			for _, s := range env.Services {
				app := dep.Apps[s.Name]
				if len(app.Calls) != len(s.Calls) {
					t.Errorf("%s %s: calls %+v for %v", shape, s.Name, app.Calls, s.Calls)
				}
				for _, call := range app.Calls {
					if call.Dial != meshes.HostPort(s.Node.Local, OutboundPort) {
						t.Errorf("%s %s: call %+v does not dial the sidecar", shape, s.Name, call)
					}
				}
			}
		}
	}
	if _, err := New("v").Deploy(meshes.Env{}, scenarios.Baseline); err == nil {
		t.Error("Deploy accepted an unsupported mode")
	}
}

// TestTransparentSidecarsRedirectEveryCaller checks that interception
// covers every calling node's outbound and every service's inbound port.
func TestTransparentSidecarsRedirectEveryCaller(t *testing.T) {
	env := meshtest.Env(t.TempDir(), "chain", true)
	env.Transparent = true
	dep, err := New("v").Deploy(env, scenarios.Sidecar)
	if err != nil {
		t.Fatal(err)
	}
	var outbound, inbound []string
	for _, r := range dep.Redirects {
		if r.Outbound {
			outbound = append(outbound, r.Node)
			if r.ExcludeMark != ProxyMark {
				t.Errorf("redirect %+v does not exclude the proxy's mark", r)
			}
		} else {
			inbound = append(inbound, r.Node)
		}
	}
	if !slices.Equal(outbound, []string{"client", "svc-0", "svc-1"}) || !slices.Equal(inbound, []string{"svc-0", "svc-1", "svc-2"}) {
		t.Errorf("outbound redirects on %v, inbound on %v", outbound, inbound)
	}
	if dep.Target.URL != "http://10.0.0.3:8080/" || dep.Apps["svc-0"].Calls[0].Dial != "10.0.0.4:8080" {
		t.Errorf("transparent target %s, svc-0 calls %+v: want the callees' own addresses", dep.Target.URL, dep.Apps["svc-0"].Calls)
	}
}

func TestEveryModeRendersEveryShape(t *testing.T) {
	for shape := range meshtest.Shapes {
		for _, mode := range New("v").Modes() {
			env := meshtest.Env(t.TempDir(), shape, true)
			dep, err := New("v").Deploy(env, mode)
			if err != nil {
				t.Errorf("%s %s: %v", shape, mode, err)
				continue
			}
			switch mode {
			case scenarios.PerNode:
				want := len(env.Workloads())
				if shape == "shared" {
					want -= 3 // 4 pods on one node
				}
				if len(dep.Components) != want || !strings.HasPrefix(dep.Components[0].Name, "node-proxy-") {
					t.Errorf("per-node components: %+v", dep.Components)
				}
				for _, c := range dep.Components {
					served(t, dep, c)
				}
			case scenarios.Proxyless:
				if len(dep.Components) != 0 || dep.Target.URL != "http://svc-0:8080/" || dep.ControlPlane == nil {
					t.Errorf("%s proxyless deployment: %+v", shape, dep)
				}
				served(t, dep, meshes.Component{Name: "client-proxyless", Args: dep.Target.ClientArgs})
				for _, s := range env.Services {
					app := dep.Apps[s.Name]
					if app.Ready == nil || app.Ready.TCP != meshes.HostPort(s.Node.Addr, ProxylessPort) || len(app.Calls) != len(s.Calls) {
						t.Errorf("%s proxyless %s: %+v", shape, s.Name, app)
						continue
					}
					cfg := served(t, dep, meshes.Component{Name: s.Name + "-proxyless", Args: app.Args})
					if want := 1 + min(len(s.Calls), 1); len(cfg.Listeners) != want {
						t.Errorf("%s proxyless %s: %d listeners, want %d", shape, s.Name, len(cfg.Listeners), want)
					}
				}
			}
		}
	}
}

// TestPolicyReach: services a policy may send a caller's requests to get
// a cluster at the caller and accept it at their inbound, in sidecar and
// per-node modes, and the control plane's model indexes where policy
// applies.
func TestPolicyReach(t *testing.T) {
	for _, mode := range []scenarios.Mode{scenarios.Sidecar, scenarios.PerNode} {
		env := meshtest.Env(t.TempDir(), "fanout", true)
		// svc-0 calls svc-1..3; a split of svc-1 may send to svc-2, which
		// the client does not call.
		env.Services[0].Calls = []string{"svc-1"}
		env.Alternatives = map[string][]string{"svc-0": {"svc-2"}}
		dep, err := New("v").Deploy(env, mode)
		if err != nil {
			t.Fatal(err)
		}
		client := dep.Components[0]
		cfg := served(t, dep, client)
		var clusters []string
		for _, c := range cfg.Clusters {
			clusters = append(clusters, c.Name)
		}
		want := map[scenarios.Mode][]string{
			scenarios.Sidecar: {"outbound|8080||svc-0", "outbound|8080||svc-2"},
			scenarios.PerNode: {"tunnel|svc-0", "tunnel|svc-2"},
		}[mode]
		if !slices.Equal(clusters, want) {
			t.Errorf("%s: client clusters %v, want %v", mode, clusters, want)
		}
		m, _, err := controlplane.ReadModel(dep.ControlPlane.Args[2])
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(m.Services, func(s controlplane.Service) bool { return s.Name == "svc-2" })
		if i < 0 {
			t.Fatalf("%s: model has no svc-2: %+v", mode, m.Services)
		}
		s := m.Services[i]
		if s.Clusters[client.Name] != want[1] || len(s.Inbound) != 1 || m.Accounts["client"] != id("client") ||
			!slices.ContainsFunc(s.Routes, func(r controlplane.RouteRef) bool {
				return r.Node == client.Name && r.VirtualHost == "svc-2" && r.RewriteAuthority == (mode == scenarios.PerNode)
			}) {
			t.Errorf("%s: model of svc-2 %+v", mode, s)
		}
		// svc-2's sidecar accepts the client, which may now reach it.
		if mode == scenarios.Sidecar {
			inbound := 0
			for _, c := range dep.Components {
				if !strings.Contains(c.Name, "svc-2") {
					continue
				}
				for _, l := range served(t, dep, c).Listeners {
					if l.Direction == proxy.Inbound {
						inbound++
						if !slices.Contains(l.TLS.AllowedIDs, id("client")) {
							t.Errorf("svc-2's inbound accepts %v, not the client", l.TLS.AllowedIDs)
						}
					}
				}
			}
			if inbound == 0 {
				t.Error("svc-2 has no inbound listener")
			}
		}
	}
}

// TestReplicatedServices: in every mode that spreads requests over
// replicas, a replicated callee's cluster has an endpoint per pod (a node
// proxy per pod's node in per-node mode), outlier detection, and a route
// retrying connection failures, resets and 503s twice; each replica gets
// its own proxy (or library node) under its service's identity.
func TestReplicatedServices(t *testing.T) {
	for _, mode := range []scenarios.Mode{scenarios.Sidecar, scenarios.PerNode, scenarios.Proxyless} {
		env := meshtest.Env(t.TempDir(), "replicated", true)
		m := New("v")
		if err := meshes.SupportsReplicas(m, mode); err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		dep, err := m.Deploy(env, mode)
		if err != nil {
			t.Fatal(err)
		}
		cfgs := map[string]*proxy.Config{}
		for _, c := range dep.Components {
			cfgs[c.Name] = served(t, dep, c)
		}
		if mode == scenarios.Proxyless {
			// The library's nodes: one per pod, each with its own args.
			for _, w := range env.Workloads()[1:] {
				app, ok := dep.Apps[w.Name]
				if !ok || !slices.Contains(app.Args, w.Name+"-proxyless") {
					t.Errorf("proxyless: pod %s has no library node of its own: %+v", w.Name, app)
				}
			}
			continue
		}
		caller := map[scenarios.Mode]string{scenarios.Sidecar: "svc-0-1-sidecar", scenarios.PerNode: "node-proxy-svc-0-1"}[mode]
		cfg := cfgs[caller]
		if cfg == nil {
			t.Fatalf("%s: no proxy %s among %v", mode, caller, slices.Collect(maps.Keys(cfgs)))
		}
		want := map[scenarios.Mode]int{scenarios.Sidecar: 3, scenarios.PerNode: 3}[mode]
		var found bool
		for _, cl := range cfg.Clusters {
			if strings.Contains(cl.Name, "svc-1") && len(cl.Endpoints) == want {
				found = true
				if cl.Outlier == nil || cl.Outlier.ConsecutiveGatewayFailure != 3 || cl.LBPolicy != proxy.LBLeastRequest {
					t.Errorf("%s: cluster %s outlier %+v, balancing %s", mode, cl.Name, cl.Outlier, cl.LBPolicy)
				}
				// The per-node tunnel pings a quiet peer node each second.
				if k := cl.HTTP2Keepalive; mode == scenarios.PerNode && (k == nil || k.Interval.D() != time.Second || k.Timeout.D() != time.Second) {
					t.Errorf("%s: cluster %s keepalive %+v", mode, cl.Name, k)
				}
			}
		}
		if !found {
			t.Errorf("%s: %s has no cluster with an endpoint per pod of svc-1: %+v", mode, caller, cfg.Clusters)
		}
		retried := false
		for _, l := range cfg.Listeners {
			for _, vh := range l.VirtualHosts {
				for _, r := range vh.Routes {
					if vh.Name == "svc-1" && r.Retry != nil && r.Retry.NumRetries == 2 && slices.Contains(r.Retry.RetriableStatusCodes, 503) &&
						slices.Contains(r.Retry.RetryOn, "connect-failure") && slices.Contains(r.Retry.RetryOn, "reset") {
						retried = true
					}
				}
			}
		}
		if !retried {
			t.Errorf("%s: %s's route to svc-1 does not retry on another pod", mode, caller)
		}
	}
	// TCP through node proxies: each pod's node proxy is a peer the
	// caller's accepts.
	env := meshtest.Env(t.TempDir(), "replicated", true)
	env.Protocol = scenarios.ProtocolTCP
	dep, err := New("v").Deploy(env, scenarios.PerNode)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, c := range dep.Components {
		if c.Name != "node-proxy-svc-0-1" {
			continue
		}
		for _, cl := range served(t, dep, c).Clusters {
			if strings.HasPrefix(cl.Name, "outbound") {
				checked++
				if len(cl.Endpoints) != 3 || cl.TLS == nil || len(cl.TLS.AllowedIDs) != 3 {
					t.Errorf("tcp per-node: cluster %s to svc-1's 3 pods: %d endpoints, peers %+v", cl.Name, len(cl.Endpoints), cl.TLS)
				}
			}
		}
	}
	if checked != 1 {
		t.Errorf("tcp per-node: %d outbound clusters of node-proxy-svc-0-1 checked, want 1", checked)
	}
	if err := meshes.SupportsReplicas(New("v"), scenarios.ProxylessGRPC); err == nil {
		t.Errorf("proxyless-grpc claims to spread requests over replicas")
	}
}

// variantProxies deploys the variant of the own mesh that tuning makes
// in mode (on the chain topology) and returns its proxy components.
func variantProxies(t *testing.T, mode scenarios.Mode, tuning *scenarios.ProxyTuning) (meshes.Mesh, []meshes.Component) {
	t.Helper()
	m, err := New("v").(meshes.Tunable).Tuned("variant", mode, tuning)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name() != "variant" {
		t.Errorf("variant named %q", m.Name())
	}
	dep, err := m.Deploy(meshtest.Env(t.TempDir(), "chain", true), mode)
	if err != nil {
		t.Fatal(err)
	}
	var proxies []meshes.Component
	for _, c := range dep.Components {
		if c.Class == "proxy" {
			proxies = append(proxies, c)
		}
	}
	if len(proxies) == 0 {
		t.Fatalf("%s: no proxy component in %+v", mode, dep.Components)
	}
	return m, proxies
}

// TestTunedVariant: a variant carries its row name, and its sidecar and
// per-node proxies get the GC policy as flags; proxyless modes refuse
// it (no proxy process to tune).
func TestTunedVariant(t *testing.T) {
	tuning := &scenarios.ProxyTuning{GOGC: scenarios.GCOff, MemoryLimit: 32 << 20, HTTP1: scenarios.HTTP1FastHTTP}
	for _, mode := range []scenarios.Mode{scenarios.Sidecar, scenarios.PerNode} {
		_, proxies := variantProxies(t, mode, tuning)
		for _, c := range proxies {
			if c.Command != meshes.ProxyCommand {
				t.Errorf("%s %s: command %q, want the proxy-only build", mode, c.Name, c.Command)
			}
			if args := strings.Join(c.Args, " "); !strings.Contains(args, " --gogc off --memory-limit 33554432 --http1 fasthttp") {
				t.Errorf("%s %s: args %s lack the policy", mode, c.Name, args)
			}
		}
	}
	for _, mode := range []scenarios.Mode{scenarios.Proxyless, scenarios.ProxylessGRPC} {
		if _, err := New("v").(meshes.Tunable).Tuned("x", mode, tuning); err == nil || !strings.Contains(err.Error(), "no proxy process") {
			t.Errorf("%s: Tuned = %v, want a refusal", mode, err)
		}
		if _, err := New("v").(meshes.Tunable).Tuned("x", mode, nil); err != nil {
			t.Errorf("%s: a renamed untuned variant refused: %v", mode, err)
		}
	}
}

// TestVariantBinary: a variant's binary runs its proxies.
func TestVariantBinary(t *testing.T) {
	m, proxies := variantProxies(t, scenarios.Sidecar, &scenarios.ProxyTuning{Binary: "/opt/candidate/meshbench-proxy"})
	for _, c := range proxies {
		if c.Command != "/opt/candidate/meshbench-proxy" || c.Args[0] != "proxy" {
			t.Errorf("%s: %s %v", c.Name, c.Command, c.Args)
		}
	}
	if v := m.(meshes.Versioned).Version(); !strings.Contains(v, "/opt/candidate/meshbench-proxy") {
		t.Errorf("version %q does not name the build", v)
	}
}

// TestPerNodeSharedNode: pods sharing a node share its proxy, which ends
// every caller's tunnel in one listener with a virtual host per service
// (a replicated one's pods both its endpoints) and accepts only the
// calling node's proxy, and takes each calling pod's requests on a port
// of the pod's own; the caller's proxy has one tunnel to that node for
// the three services. Sidecars stay one per pod.
func TestPerNodeSharedNode(t *testing.T) {
	env := meshtest.Env(t.TempDir(), "shared", true)
	dep, err := New("v").Deploy(env, scenarios.PerNode)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range dep.Components {
		names = append(names, c.Name)
	}
	if want := []string{"node-proxy-client", "node-proxy-svc-0", "node-proxy-shared", "node-proxy-svc-4"}; !slices.Equal(names, want) {
		t.Fatalf("per-node proxies %v, want %v", names, want)
	}
	// client .2, svc-0 .3, svc-1 .4, svc-2's pods .5 and .6, svc-3 .7,
	// svc-4 .8, the shared node .9: the pods keep their own addresses.
	shared := served(t, dep, dep.Components[2])
	listeners := map[string]proxy.Listener{}
	for _, l := range shared.Listeners {
		listeners[l.Name] = l
	}
	// svc-1 has slot 0, svc-2's pods 1 and 2.
	if l := listeners["outbound-svc-2"]; l.Address != "10.0.0.9:16001" || dep.Apps["svc-2"].Calls[0].Dial != l.Address {
		t.Errorf("svc-2's outbound listener %q, its app dials %+v", l.Address, dep.Apps["svc-2"].Calls)
	}
	if l := listeners["outbound-svc-2-1"]; l.Address != "10.0.0.9:16002" || dep.Apps["svc-2-1"].Calls[0].Dial != l.Address {
		t.Errorf("svc-2-1's outbound listener %q, its app dials %+v", l.Address, dep.Apps["svc-2-1"].Calls)
	}
	tun, ok := listeners["tunnel"]
	if !ok || len(shared.Listeners) != 3 || tun.Address != "10.0.0.9:15008" {
		t.Fatalf("shared node's listeners: %+v", shared.Listeners)
	}
	// A pod's port is the pod's alone: the node proxy gives whatever
	// dials it the pod's identity. The tunnel is mutual TLS's.
	for name, want := range map[string][]string{"outbound-svc-2": {"10.0.0.5/32"}, "outbound-svc-2-1": {"10.0.0.6/32"}, "tunnel": nil} {
		if got := listeners[name].SourceRanges; !slices.Equal(got, want) {
			t.Errorf("%s takes connections from %q, want %q", name, got, want)
		}
	}
	var vhosts []string
	for _, vh := range tun.VirtualHosts {
		vhosts = append(vhosts, vh.Name)
	}
	if !slices.Equal(vhosts, []string{"svc-1", "svc-2", "svc-3"}) {
		t.Errorf("tunnel virtual hosts %v", vhosts)
	}
	if tun.TLS == nil || !slices.Equal(tun.TLS.AllowedIDs, []string{"spiffe://meshbench.local/ns/meshbench-system/sa/node-svc-0"}) {
		t.Errorf("tunnel accepts %+v, want only svc-0's node proxy", tun.TLS)
	}
	endpoints := map[string][]string{}
	for _, c := range shared.Clusters {
		for _, e := range c.Endpoints {
			endpoints[c.Name] = append(endpoints[c.Name], e.Address)
		}
	}
	if want := []string{"10.0.0.5:8080", "10.0.0.6:8080"}; !slices.Equal(endpoints["inbound|8080||svc-2"], want) {
		t.Errorf("svc-2's pods at the shared node: %v, want %v", endpoints["inbound|8080||svc-2"], want)
	}
	if want := []string{"10.0.0.8:15008"}; !slices.Equal(endpoints["tunnel|svc-4"], want) {
		t.Errorf("the shared node's tunnel to svc-4: %v, want %v", endpoints["tunnel|svc-4"], want)
	}
	caller := served(t, dep, dep.Components[1])
	var tunnels []string
	for _, c := range caller.Clusters {
		if strings.HasPrefix(c.Name, "tunnel|") {
			tunnels = append(tunnels, c.Name)
			if len(c.Endpoints) != 1 || c.Endpoints[0].Address != "10.0.0.9:15008" || !c.HTTP2 {
				t.Errorf("%s: %+v", c.Name, c)
			}
		}
	}
	if !slices.Equal(tunnels, []string{"tunnel|shared"}) {
		t.Errorf("svc-0's node proxy tunnels %v, want one to the shared node", tunnels)
	}
	if got := dep.Apps["svc-0"].Calls[0].Dial; got != "127.0.0.1:15001" {
		t.Errorf("svc-0 dials %s, want its own node's proxy", got)
	}
	side, err := New("v").Deploy(env, scenarios.Sidecar)
	if err != nil {
		t.Fatal(err)
	}
	if len(side.Components) != len(env.Workloads()) {
		t.Errorf("%d sidecars for %d pods", len(side.Components), len(env.Workloads()))
	}
}

// TestPerNodeL4 renders the L4 node proxies on the shared shape: a port
// per pod and callee carrying connections as CONNECT streams with the
// pod's identity, and a tunnel end per node admitting each service's
// callers only, to its local pods.
func TestPerNodeL4(t *testing.T) {
	env := meshtest.Env(t.TempDir(), "shared", true)
	m, err := New("v").(meshes.Tunable).Tuned("meshbench-l4", scenarios.PerNode, &scenarios.ProxyTuning{Layer: scenarios.LayerL4})
	if err != nil {
		t.Fatal(err)
	}
	dep, err := m.Deploy(env, scenarios.PerNode)
	if err != nil {
		t.Fatal(err)
	}
	if dep.Target.URL != "http://127.0.0.1:17000/" || dep.Target.Host != "svc-0:8080" || dep.TrafficMetrics != nil {
		t.Errorf("target %+v (traffic metrics set: %v)", dep.Target, dep.TrafficMetrics != nil)
	}
	// svc-0 calls svc-1, svc-2 and svc-3 on its own node's ports 17000-2.
	for i, call := range dep.Apps["svc-0"].Calls {
		if want := "127.0.0.1:" + strconv.Itoa(L4OutboundBase+i); call.Dial != want {
			t.Errorf("svc-0's call %d dials %s, want %s", i, call.Dial, want)
		}
	}
	// svc-2's pods (slots 1 and 2 of the shared node) call svc-4.
	if a, b := dep.Apps["svc-2"].Calls[0].Dial, dep.Apps["svc-2-1"].Calls[0].Dial; a != "10.0.0.9:17016" || b != "10.0.0.9:17032" {
		t.Errorf("svc-2's pods dial %s and %s", a, b)
	}
	caller := served(t, dep, dep.Components[1]) // svc-0's node
	tunnels := map[string]proxy.Listener{}
	for _, l := range caller.Listeners {
		tunnels[l.TCPTunnel] = l
	}
	if l := tunnels["svc-2:8080"]; l.Address != "127.0.0.1:17001" || l.TCPCluster != "hbone|svc-0|shared" || l.SourceRanges != nil {
		t.Errorf("svc-0's tunnel to svc-2: %+v", l)
	}
	// Its three callees are on the shared node: one cluster, one pooled
	// connection, for all three.
	tunnelClusters := 0
	for _, c := range caller.Clusters {
		if !strings.HasPrefix(c.Name, "hbone|") {
			continue // svc-0's own inbound
		}
		tunnelClusters++
		if !c.HTTP2 || len(c.Endpoints) != 1 || c.Endpoints[0].Address != "10.0.0.9:15008" ||
			!strings.Contains(filepath.Base(c.TLS.CertFile), "svc-0") ||
			!slices.Equal(c.TLS.AllowedIDs, []string{"spiffe://meshbench.local/ns/meshbench-system/sa/node-shared"}) {
			t.Errorf("svc-0's cluster %s: %+v, tls %+v", c.Name, c, c.TLS)
		}
		// Its streams share the cluster's request bound: the default
		// (1024) would cap the connections to all three callees.
		if c.CircuitBreakers == nil || c.CircuitBreakers.MaxRequests != hboneStreams {
			t.Errorf("svc-0's cluster %s: circuit breakers %+v, want %d requests", c.Name, c.CircuitBreakers, hboneStreams)
		}
	}
	if tunnelClusters != 1 {
		t.Errorf("svc-0 has %d tunnel clusters, want 1 (its callees share a node)", tunnelClusters)
	}
	shared := served(t, dep, dep.Components[2])
	var end *proxy.Listener
	podPorts := 0
	for i, l := range shared.Listeners {
		if l.Name == "hbone" {
			end = &shared.Listeners[i]
		}
		// svc-2's pods' ports to svc-4 (17016, 17032) take their pod's
		// connections alone.
		if want, ok := map[string]string{"10.0.0.9:17016": "10.0.0.5/32", "10.0.0.9:17032": "10.0.0.6/32"}[l.Address]; ok {
			podPorts++
			if !slices.Equal(l.SourceRanges, []string{want}) {
				t.Errorf("shared node's %s at %s takes connections from %q, want %s", l.Name, l.Address, l.SourceRanges, want)
			}
		}
	}
	if podPorts != 2 {
		t.Errorf("shared node's listeners %+v: want svc-2's pods' ports 17016 and 17032", shared.Listeners)
	}
	if end == nil || end.Address != "10.0.0.9:15008" || end.Codec != proxy.CodecHTTP2 || end.RBAC == nil {
		t.Fatalf("shared node's tunnel end: %+v", end)
	}
	for _, p := range end.RBAC.Policies {
		if !slices.Equal(p.Principals, []string{id("svc-0")}) || len(p.Hosts) != 1 || p.Hosts[0] != p.Name+":8080" {
			t.Errorf("tunnel end admits %v to %v under %s, want only svc-0 to %s:8080", p.Principals, p.Hosts, p.Name, p.Name)
		}
	}
	if len(end.RBAC.Policies) != 3 {
		t.Errorf("tunnel end policies %+v, want svc-1, svc-2, svc-3", end.RBAC.Policies)
	}
	if err := m.(meshes.PolicyCapable).SupportsPolicies([]scenarios.Policy{{}}, scenarios.PerNode); err == nil || !strings.Contains(err.Error(), "layer l7") {
		t.Errorf("L4 per-node with policies: %v", err)
	}
	if _, err := New("v").(meshes.Tunable).Tuned("x", scenarios.Sidecar, &scenarios.ProxyTuning{Layer: scenarios.LayerL4}); err == nil {
		t.Error("a sidecar took layer l4")
	}
}

// TestPerNodeWaypoint renders waypoints on the shared shape: callers'
// node proxies tunnel to each callee's waypoint; the waypoint ends the
// streams into its internal L7 listener and tunnels each request to the
// node of the pod it picks; node proxies admit only the waypoints that
// send to their pods.
func TestPerNodeWaypoint(t *testing.T) {
	env := meshtest.Env(t.TempDir(), "shared", true)
	m, err := New("v").(meshes.Tunable).Tuned("meshbench-waypoint", scenarios.PerNode, &scenarios.ProxyTuning{Layer: scenarios.LayerL4, Waypoint: true})
	if err != nil {
		t.Fatal(err)
	}
	dep, err := m.Deploy(env, scenarios.PerNode)
	if err != nil {
		t.Fatal(err)
	}
	if dep.TrafficMetrics == nil {
		t.Error("waypoints see requests, but the deployment reports no traffic metrics")
	}
	byName := map[string]meshes.Component{}
	for _, c := range dep.Components {
		byName[c.Name] = c
	}
	// svc-0's connections to svc-2 go to svc-2's waypoint, on the shared
	// node, and to nothing else.
	wpID := func(svc string) string { return "spiffe://meshbench.local/ns/meshbench-system/sa/waypoint-" + svc }
	caller := served(t, dep, byName["node-proxy-svc-0"])
	found := false
	for _, c := range caller.Clusters {
		if c.Name == "hbone|svc-0|waypoint-svc-2" {
			found = true
			if len(c.Endpoints) != 1 || c.Endpoints[0].Address != "10.0.0.9:20002" || !slices.Equal(c.TLS.AllowedIDs, []string{wpID("svc-2")}) {
				t.Errorf("svc-0's tunnel to svc-2's waypoint: %+v, tls %+v", c, c.TLS)
			}
		} else if strings.HasPrefix(c.Name, "hbone|") && !strings.Contains(c.Name, "|waypoint-") {
			t.Errorf("svc-0 tunnels past a waypoint: %+v", c)
		}
	}
	if !found {
		t.Errorf("svc-0 has no tunnel to svc-2's waypoint: %+v", caller.Clusters)
	}
	wp, ok := byName["waypoint-svc-2"]
	if !ok || wp.Node != "shared" || len(dep.Components) != 4+5 {
		t.Fatalf("waypoint-svc-2 %+v; %d components, want 4 node proxies and 5 waypoints", wp, len(dep.Components))
	}
	cfg := served(t, dep, wp)
	listeners := map[string]proxy.Listener{}
	for _, l := range cfg.Listeners {
		listeners[l.Name] = l
	}
	if l := listeners["hbone"]; l.Address != "10.0.0.9:20002" || l.RBAC == nil || !slices.Equal(l.RBAC.Policies[0].Principals, []string{id("svc-0")}) {
		t.Errorf("waypoint's tunnel end: %+v", l)
	}
	if l := listeners["main"]; !l.Internal || l.Address != "" || len(l.VirtualHosts) == 0 {
		t.Errorf("waypoint's L7 listener: %+v", l)
	}
	// One listener per pod of svc-2, tunnelling to the shared node with
	// the pod's address as the authority.
	for _, pod := range []string{"svc-2", "svc-2-1"} {
		if l := listeners["originate|"+pod]; !l.Internal || l.TCPCluster != "hbone|shared" || l.TCPTunnel == "" {
			t.Errorf("waypoint's listener to %s: %+v", pod, l)
		}
	}
	if i := slices.IndexFunc(cfg.Clusters, func(c proxy.Cluster) bool { return c.Name == "outbound|8080||svc-2" }); i < 0 {
		t.Errorf("waypoint has no cluster of svc-2's pods: %+v", cfg.Clusters)
	} else if c := cfg.Clusters[i]; len(c.Endpoints) != 2 || c.Endpoints[0].Internal != "originate|svc-2" || c.LBPolicy != proxy.LBLeastRequest {
		t.Errorf("waypoint's cluster of svc-2's pods: %+v", c)
	}
	// The shared node admits each pod's waypoint only, to that pod.
	shared := served(t, dep, byName["node-proxy-shared"])
	if !slices.ContainsFunc(shared.Listeners, func(l proxy.Listener) bool { return l.Name == "hbone" }) {
		t.Errorf("the shared node has no tunnel end")
	}
	for _, l := range shared.Listeners {
		if l.Name != "hbone" {
			continue
		}
		if len(l.RBAC.Policies) != 4 {
			t.Errorf("shared node's tunnel end: policies %+v, want one per pod (svc-1, svc-2 twice, svc-3)", l.RBAC.Policies)
		}
		service := map[string]string{"svc-1": "svc-1", "svc-2": "svc-2", "svc-2-1": "svc-2", "svc-3": "svc-3"}
		for _, p := range l.RBAC.Policies {
			if want := wpID(service[p.Name]); !slices.Equal(p.Principals, []string{want}) || len(p.Hosts) != 1 {
				t.Errorf("shared node admits %v to %v under %s, want %s only", p.Principals, p.Hosts, p.Name, want)
			}
		}
	}
	pc := m.(meshes.PolicyCapable)
	split := scenarios.Policy{Object: &splitv1alpha4.TrafficSplit{}}
	target := scenarios.Policy{Object: &accessv1alpha3.TrafficTarget{}}
	if err := pc.SupportsPolicies([]scenarios.Policy{split, target}, scenarios.PerNode); err == nil || !strings.Contains(err.Error(), "not enforced on the split's backends") {
		t.Errorf("waypoints with a split and a target: %v", err)
	}
	env.Protocol = scenarios.ProtocolTCP
	if _, err := m.Deploy(env, scenarios.PerNode); err == nil || !strings.Contains(err.Error(), "protocol tcp") {
		t.Errorf("waypoints for TCP load: %v", err)
	}
}

// On the loopback platform a pod has no network of its own (every pod's
// connections come from 127.0.0.1), so no port of a shared node is
// restricted to a source: it would refuse the pod itself.
func TestSharedNodeSourcesOnLoopback(t *testing.T) {
	env := meshtest.Env(t.TempDir(), "shared", false)
	l4, err := New("v").(meshes.Tunable).Tuned("meshbench-l4", scenarios.PerNode, &scenarios.ProxyTuning{Layer: scenarios.LayerL4})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []meshes.Mesh{New("v"), l4} {
		dep, err := m.Deploy(env, scenarios.PerNode)
		if err != nil {
			t.Fatal(err)
		}
		podPorts := 0
		for _, c := range dep.Components {
			if c.Class != "proxy" {
				continue
			}
			for _, l := range served(t, dep, c).Listeners {
				if strings.HasPrefix(l.Name, "outbound") && c.Name == "node-proxy-shared" {
					podPorts++
				}
				if l.SourceRanges != nil {
					t.Errorf("%s: %s's %s takes connections from %q on loopback", m.Name(), c.Name, l.Name, l.SourceRanges)
				}
			}
		}
		if podPorts == 0 {
			t.Errorf("%s: the shared node's proxy has no pod port", m.Name())
		}
	}
}
