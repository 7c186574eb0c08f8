package controlplane

import (
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"go.yaml.in/yaml/v3"

	"github.com/meshbench/meshbench/proxy"
	"github.com/meshbench/meshbench/proxy/xds"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// canaryModel is a client calling app, whose versions app-v1 and app-v2
// are services too, as meshbench's renderer lays a mesh out: each caller's
// proxy has an outbound listener with a virtual host and a cluster per
// service it may reach, each service's proxy an inbound listener. With
// perNode, the inbound listeners are node proxies' tunnels, which take the
// caller's identity from a header and route by authority.
func canaryModel(perNode bool) (*Model, map[string]*xds.Bundle) {
	id := func(sa string) string { return "spiffe://meshbench.local/ns/default/sa/" + sa }
	m := &Model{Nodes: map[string]string{}, Accounts: map[string]string{}}
	bundles := map[string]*xds.Bundle{}
	svcs := []string{"app", "app-v1", "app-v2"}
	out := &routev3.RouteConfiguration{Name: "outbound"}
	client := &xds.Bundle{}
	for i, s := range svcs {
		cluster := "outbound|8080||" + s
		out.VirtualHosts = append(out.VirtualHosts, xds.Routes(s, []string{s, s + ":8080"}, cluster).VirtualHosts...)
		client.Clusters = append(client.Clusters, xds.EDSCluster(cluster, time.Second, nil))
		client.Endpoints = append(client.Endpoints, xds.LoadAssignment(cluster, "10.0.0."+string(rune('3'+i))+":15006"))
		node := s + "-sidecar"
		in := &ListenerRef{Node: node, Listener: "inbound"}
		tls := &xds.TLSFiles{Cert: "/c", Key: "/k", CA: "/ca", PeerIDs: []string{id("client")}}
		if perNode {
			node = "node-proxy-" + s
			in = &ListenerRef{Node: node, Listener: "tunnel", SourceHeader: "X-Meshbench-Source"}
			tls.PeerIDs = []string{"spiffe://meshbench.local/ns/meshbench-system/sa/node-client"}
		}
		bundles[node] = &xds.Bundle{
			Listeners: []*listenerv3.Listener{xds.HTTPListener(in.Listener, "10.0.0.9:15006", corev3.TrafficDirection_INBOUND, true,
				xds.Routes("inbound", []string{"*"}, "inbound|8080"), tls)},
			Clusters:  []*clusterv3.Cluster{xds.EDSCluster("inbound|8080", time.Second, nil)},
			Endpoints: []*endpointv3.ClusterLoadAssignment{xds.LoadAssignment("inbound|8080", "127.0.0.1:8080")},
		}
		m.Services = append(m.Services, Service{Name: s, Identity: id(s), ServiceAccount: s, Authority: s + ":8080",
			Routes:   []RouteRef{{Node: "client-proxy", Listener: "outbound", VirtualHost: s, RewriteAuthority: perNode}},
			Clusters: map[string]string{"client-proxy": cluster}, Inbound: []ListenerRef{*in}})
		m.Accounts[s] = id(s)
	}
	m.Accounts["client"] = id("client")
	client.Listeners = []*listenerv3.Listener{xds.HTTPListener("outbound", "127.0.0.1:15001", corev3.TrafficDirection_OUTBOUND, false, out, nil)}
	bundles["client-proxy"] = client
	for node := range bundles {
		m.Nodes[node] = node + ".xds.json"
	}
	return m, bundles
}

// policiesFrom reads YAML policy objects as the runner sends them (JSON).
func policiesFrom(t *testing.T, doc string) []json.RawMessage {
	t.Helper()
	var objs []any
	if err := yaml.Unmarshal([]byte(doc), &objs); err != nil {
		t.Fatal(err)
	}
	var out []json.RawMessage
	for _, o := range objs {
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// TestCompileGolden compiles policy sets against the canary model and
// compares the xDS of the nodes they change with golden files (refresh
// with -update); every compiled bundle must load in the proxy.
func TestCompileGolden(t *testing.T) {
	cases := []struct {
		name    string
		perNode bool
		nodes   []string // whose bundles the golden file holds
		doc     string
	}{
		{"split", false, []string{"client-proxy"}, `
- apiVersion: split.smi-spec.io/v1alpha4
  kind: TrafficSplit
  metadata: {name: canary}
  spec: {service: app, backends: [{service: app-v1, weight: 90}, {service: app-v2, weight: 10}, {service: app, weight: 0}]}
`},
		{"split-per-node", true, []string{"client-proxy"}, `
- apiVersion: split.smi-spec.io/v1alpha4
  kind: TrafficSplit
  metadata: {name: canary}
  spec: {service: app, backends: [{service: app-v1, weight: 50}, {service: app-v2, weight: 50}]}
`},
		{"httproute", false, []string{"client-proxy"}, `
- apiVersion: gateway.networking.k8s.io/v1
  kind: HTTPRoute
  metadata: {name: app}
  spec:
    parentRefs: [{group: "", kind: Service, name: app}]
    rules:
    - matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: x-canary, value: "true"}], queryParams: [{name: v, value: "2"}], method: GET}]
      filters:
      - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-route, value: canary}], add: [{name: x-trace, value: "1"}], remove: [x-debug]}}
      - {type: URLRewrite, urlRewrite: {hostname: app-v2, path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}
      backendRefs: [{name: app-v2, port: 8080}]
      timeouts: {request: 2s}
      retry: {attempts: 2, codes: [503]}
    - matches: [{path: {type: Exact, value: /old}}]
      filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /new}, statusCode: 301}}]
    - backendRefs: [{name: app-v1, port: 8080, weight: 3}, {name: app-v2, port: 8080, weight: 1}]
      filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x-served-by, value: mesh}]}}]
`},
		{"grpcroute", false, []string{"client-proxy"}, `
- apiVersion: gateway.networking.k8s.io/v1
  kind: GRPCRoute
  metadata: {name: app}
  spec:
    parentRefs: [{kind: Service, name: app}]
    rules:
    - matches: [{method: {service: grpc.testing.TestService, method: UnaryCall}}]
      backendRefs: [{name: app-v2, port: 8080}]
    - matches: [{method: {service: grpc.testing.TestService}}]
      backendRefs: [{name: app-v1, port: 8080}]
`},
		{"traffictarget", false, []string{"app-v2-sidecar", "app-v1-sidecar"}, `
- apiVersion: specs.smi-spec.io/v1alpha4
  kind: HTTPRouteGroup
  metadata: {name: echo}
  spec:
    matches:
    - {name: get-echo, pathRegex: /echo.*, methods: [GET, HEAD]}
    - {name: metrics, pathRegex: /metrics, methods: ["*"]}
- apiVersion: specs.smi-spec.io/v1alpha4
  kind: TCPRoute
  metadata: {name: tcp}
  spec: {}
- apiVersion: access.smi-spec.io/v1alpha3
  kind: TrafficTarget
  metadata: {name: client-reads}
  spec:
    destination: {kind: ServiceAccount, name: app-v2}
    sources: [{kind: ServiceAccount, name: client}]
    rules: [{kind: HTTPRouteGroup, name: echo, matches: [get-echo]}]
- apiVersion: access.smi-spec.io/v1alpha3
  kind: TrafficTarget
  metadata: {name: app-anything}
  spec:
    destination: {kind: ServiceAccount, name: app-v2}
    sources: [{kind: ServiceAccount, name: app}]
    rules: [{kind: TCPRoute, name: tcp}]
`},
		{"traffictarget-per-node", true, []string{"node-proxy-app-v2"}, `
- apiVersion: specs.smi-spec.io/v1alpha4
  kind: HTTPRouteGroup
  metadata: {name: echo}
  spec: {matches: [{name: all, pathRegex: ".*"}]}
- apiVersion: access.smi-spec.io/v1alpha3
  kind: TrafficTarget
  metadata: {name: client-reads}
  spec:
    destination: {kind: ServiceAccount, name: app-v2}
    sources: [{kind: ServiceAccount, name: client}]
    rules: [{kind: HTTPRouteGroup, name: echo}]
`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, base := canaryModel(c.perNode)
			before := bundleJSON(t, base, slices.Collect(maps.Keys(base)))
			got, err := compile(m, base, policiesFrom(t, c.doc))
			if err != nil {
				t.Fatal(err)
			}
			for node, b := range got {
				if _, err := xds.Translate(b, node, ""); err != nil {
					t.Errorf("the proxy does not load node %s's compiled bundle: %v", node, err)
				}
			}
			if after := bundleJSON(t, base, slices.Collect(maps.Keys(base))); after != before {
				t.Error("compile changed the base bundles")
			}
			out := bundleJSON(t, got, c.nodes)
			golden := filepath.Join("testdata", c.name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if out != string(want) {
				t.Errorf("%s differs from the compiled xDS:\n%s", golden, out)
			}
		})
	}
}

// bundleJSON writes the named nodes' bundles, in order, as one document.
func bundleJSON(t *testing.T, bundles map[string]*xds.Bundle, nodes []string) string {
	t.Helper()
	slices.Sort(nodes)
	var b strings.Builder
	for _, n := range nodes {
		data, err := bundles[n].Marshal()
		if err != nil {
			t.Fatal(err)
		}
		// protojson's spacing is deliberately unstable: re-indent.
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatal(err)
		}
		data, _ = json.MarshalIndent(v, "", "  ")
		b.WriteString("// node " + n + "\n")
		b.Write(data)
		b.WriteString("\n")
	}
	return b.String()
}

// TestCompileRefuses: what the control plane cannot do is an error that
// says so, and nothing is served.
func TestCompileRefuses(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"split of a routed service", `
- apiVersion: gateway.networking.k8s.io/v1
  kind: HTTPRoute
  metadata: {name: r}
  spec: {parentRefs: [{kind: Service, name: app}], rules: [{backendRefs: [{name: app-v1}]}]}
- apiVersion: split.smi-spec.io/v1alpha4
  kind: TrafficSplit
  metadata: {name: s}
  spec: {service: app, backends: [{service: app-v2, weight: 1}]}
`, "service app is routed by HTTPRoute r"},
		{"unknown backend", `
- apiVersion: split.smi-spec.io/v1alpha4
  kind: TrafficSplit
  metadata: {name: s}
  spec: {service: app, backends: [{service: nowhere, weight: 1}]}
`, `the mesh has no service "nowhere"`},
		{"weights all 0", `
- apiVersion: split.smi-spec.io/v1alpha4
  kind: TrafficSplit
  metadata: {name: s}
  spec: {service: app, backends: [{service: app-v1, weight: 0}]}
`, "no backend has a weight above 0"},
		{"unknown kind", `
- {apiVersion: v1, kind: Service, metadata: {name: x}}
`, "Service"},
		{"unknown field", `
- apiVersion: split.smi-spec.io/v1alpha4
  kind: TrafficSplit
  metadata: {name: s}
  spec: {service: app, backend: []}
`, "backend"},
		{"header matches in a route group", `
- apiVersion: specs.smi-spec.io/v1alpha4
  kind: HTTPRouteGroup
  metadata: {name: g}
  spec: {matches: [{name: m, headers: [{x-a: b}]}]}
- apiVersion: access.smi-spec.io/v1alpha3
  kind: TrafficTarget
  metadata: {name: t}
  spec: {destination: {kind: ServiceAccount, name: app}, sources: [{kind: ServiceAccount, name: client}], rules: [{kind: HTTPRouteGroup, name: g}]}
`, "header matches are not supported"},
		{"filters on a gRPC route", `
- apiVersion: gateway.networking.k8s.io/v1
  kind: GRPCRoute
  metadata: {name: g}
  spec:
    parentRefs: [{kind: Service, name: app}]
    rules: [{filters: [{type: RequestHeaderModifier, requestHeaderModifier: {remove: [x]}}], backendRefs: [{name: app-v1}]}]
`, "GRPCRoute g rules[0]: filters on gRPC routes are not supported"},
		{"redirect prefix without a prefix match", `
- apiVersion: gateway.networking.k8s.io/v1
  kind: HTTPRoute
  metadata: {name: r}
  spec:
    parentRefs: [{kind: Service, name: app}]
    rules:
      - matches: [{path: {type: Exact, value: /old}}]
        filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}}]
`, "RequestRedirect ReplacePrefixMatch needs a PathPrefix match"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, base := canaryModel(false)
			_, err := compile(m, base, policiesFrom(t, c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one saying %q", err, c.want)
			}
		})
	}
}

// TestGRPCMethodOfAnyService: a GRPCRoute method match without a service
// matches that method of every service, and no other method.
func TestGRPCMethodOfAnyService(t *testing.T) {
	m, base := canaryModel(false)
	got, err := compile(m, base, policiesFrom(t, `
- apiVersion: gateway.networking.k8s.io/v1
  kind: GRPCRoute
  metadata: {name: g}
  spec:
    parentRefs: [{kind: Service, name: app}]
    rules:
      - matches: [{method: {method: UnaryCall}}]
        backendRefs: [{name: app-v2}]
      - backendRefs: [{name: app-v1}]
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := xds.Translate(got["client-proxy"], "client-proxy", "")
	if err != nil {
		t.Fatal(err)
	}
	var routes []proxy.Route
	for _, vh := range cfg.Listeners[0].VirtualHosts {
		if vh.Name == "app" {
			routes = vh.Routes
		}
	}
	if len(routes) != 2 || routes[0].Regex == "" {
		t.Fatalf("routes %+v, want a regex route first", routes)
	}
	re := regexp.MustCompile("^(?:" + routes[0].Regex + ")$")
	for path, want := range map[string]bool{"/grpc.testing.TestService/UnaryCall": true, "/a.B/UnaryCall": true,
		"//UnaryCall": false, "/a.B/UnaryCallX": false, "/a.B/EmptyCall": false} {
		if re.MatchString(path) != want {
			t.Errorf("%s: matched %v, want %v", path, !want, want)
		}
	}
}

// TestImplicitPolicy: with access control on everywhere, a service no
// TrafficTarget names denies every call (and one it names allows its
// sources); a service that selects others' workloads is split evenly over
// them until a TrafficSplit says otherwise; the mutations break exactly
// what they say.
func TestImplicitPolicy(t *testing.T) {
	m, base := canaryModel(false)
	m.DenyByDefault = true
	m.Services[0].Selects = []string{"app-v1", "app-v2"}
	rbacOf := func(b map[string]*xds.Bundle, node string) *proxy.RBAC {
		t.Helper()
		cfg, err := xds.Translate(b[node], node, "")
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Listeners[0].RBAC
	}
	weightsOf := func(b map[string]*xds.Bundle) []string {
		t.Helper()
		cfg, err := xds.Translate(b["client-proxy"], "client-proxy", "")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, vh := range cfg.Listeners[0].VirtualHosts {
			if vh.Name == "app" {
				for _, wc := range vh.Routes[0].WeightedClusters {
					out = append(out, fmt.Sprintf("%s=%d", wc.Name, wc.Weight))
				}
			}
		}
		return out
	}
	got, err := compile(m, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"app-sidecar", "app-v1-sidecar", "app-v2-sidecar"} {
		if r := rbacOf(got, node); r == nil || len(r.Policies) != 0 {
			t.Errorf("%s: RBAC %+v, want one that allows nothing", node, r)
		}
	}
	if w := weightsOf(got); !slices.Equal(w, []string{"outbound|8080||app-v1=1", "outbound|8080||app-v2=1"}) {
		t.Errorf("app's selector split: %v", w)
	}
	policy := policiesFrom(t, `
- apiVersion: access.smi-spec.io/v1alpha3
  kind: TrafficTarget
  metadata: {name: t}
  spec:
    destination: {kind: ServiceAccount, name: app-v1}
    sources: [{kind: ServiceAccount, name: client}]
- apiVersion: split.smi-spec.io/v1alpha4
  kind: TrafficSplit
  metadata: {name: s}
  spec: {service: app, backends: [{service: app-v1, weight: 3}, {service: app-v2, weight: 1}]}
`)
	got, err = compile(m, base, policy)
	if err != nil {
		t.Fatal(err)
	}
	if r := rbacOf(got, "app-v1-sidecar"); r == nil || len(r.Policies) != 1 || r.Policies[0].Principals[0] != "spiffe://meshbench.local/ns/default/sa/client" {
		t.Errorf("app-v1: RBAC %+v, want the client allowed", r)
	}
	if r := rbacOf(got, "app-v2-sidecar"); r == nil || len(r.Policies) != 0 {
		t.Errorf("app-v2: RBAC %+v, want one that allows nothing", r)
	}
	if w := weightsOf(got); !slices.Equal(w, []string{"outbound|8080||app-v1=3", "outbound|8080||app-v2=1"}) {
		t.Errorf("the TrafficSplit's weights: %v", w)
	}

	got, err = compileWith(m, base, policy, MutateRBACAllowAll)
	if err != nil {
		t.Fatal(err)
	}
	if r := rbacOf(got, "app-v2-sidecar"); r == nil || len(r.Policies) != 1 || r.Policies[0].Principals[0] != "*" {
		t.Errorf("rbac-allow-all: app-v2 RBAC %+v, want everything allowed", r)
	}
	got, err = compileWith(m, base, policy, MutateSplitFirstBackend)
	if err != nil {
		t.Fatal(err)
	}
	if w := weightsOf(got); len(w) != 0 {
		t.Errorf("split-first-backend: weights %v, want one cluster", w)
	}
}
