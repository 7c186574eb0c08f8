package xds

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshbench/meshbench/proxy"
)

func sampleBundle() *Bundle {
	tls := &TLSFiles{Cert: "/c.crt", Key: "/c.key", CA: "/ca.crt", PeerIDs: []string{"spiffe://td/ns/default/sa/server"}}
	return &Bundle{
		VersionInfo: "1",
		Listeners: []*listenerv3.Listener{
			HTTPListener("outbound", "127.0.0.1:15001", corev3.TrafficDirection_OUTBOUND, false,
				Routes("outbound", []string{"server", "server:8080"}, "outbound|server"), nil),
		},
		Clusters:  []*clusterv3.Cluster{EDSCluster("outbound|server", 2*time.Second, tls)},
		Endpoints: []*endpointv3.ClusterLoadAssignment{LoadAssignment("outbound|server", "10.0.0.3:15006", "10.0.0.4:15006")},
	}
}

// throughBundle marshals b, decodes it as a proxy reads a bundle file and
// translates it for node.
func throughBundle(t *testing.T, b *Bundle, node, admin string) *proxy.Config {
	t.Helper()
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	d, err := Decode(data)
	if err != nil {
		t.Fatalf("Decode of a rendered bundle: %v\n%s", err, data)
	}
	cfg, err := Translate(d, node, admin)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestRoundTripAndTranslate(t *testing.T) {
	cfg := throughBundle(t, sampleBundle(), "client", "10.0.0.2:15000")
	l := cfg.Listeners[0]
	if l.Address != "127.0.0.1:15001" || l.Direction != proxy.Outbound || l.ForwardedFor != proxy.ForwardedNone ||
		l.VirtualHosts[0].Routes[0].PathPrefix != "/" || l.VirtualHosts[0].Routes[0].Cluster != "outbound|server" {
		t.Errorf("listener = %+v", l)
	}
	c := cfg.Clusters[0]
	if len(c.Endpoints) != 2 || c.Endpoints[1].Address != "10.0.0.4:15006" || c.ConnectTimeout.D() != 2*time.Second ||
		c.TLS == nil || c.TLS.AllowedIDs[0] != "spiffe://td/ns/default/sa/server" || c.TLS.CAFile != "/ca.crt" {
		t.Errorf("cluster = %+v tls %+v", c, c.TLS)
	}
}

func TestDecodeYAMLWithRDS(t *testing.T) {
	src := `
version_info: "7"
resources:
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: inbound
  traffic_direction: INBOUND
  address: {socket_address: {address: 0.0.0.0, port_value: 15006}}
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: inbound
        use_remote_address: true
        request_timeout: 3s
        rds: {route_config_name: local}
        http_filters:
        - name: envoy.filters.http.router
          typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
- "@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
  name: local
  virtual_hosts:
  - name: all
    domains: ["*"]
    routes:
    - match: {path: /exact}
      route: {cluster: app, timeout: 1s}
    - match: {safe_regex: {regex: "/api/v[0-9]+/.*"}}
      route: {cluster: app}
    - match: {prefix: /}
      route: {cluster: app}
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: app
  type: STATIC
  connect_timeout: 1s
  load_assignment:
    cluster_name: app
    endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}}]}]
`
	b, err := Decode([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Translate(b, "server", "")
	if err != nil {
		t.Fatal(err)
	}
	rs := cfg.Listeners[0].VirtualHosts[0].Routes
	if b.VersionInfo != "7" || len(rs) != 3 || rs[0].Path != "/exact" || rs[0].Timeout.D() != time.Second ||
		rs[1].Regex != "/api/v[0-9]+/.*" || cfg.Listeners[0].RequestTimeout.D() != 3*time.Second ||
		cfg.Listeners[0].ForwardedFor != proxy.ForwardedAppend || cfg.Clusters[0].Endpoints[0].Address != "127.0.0.1:8080" {
		t.Errorf("translated = %+v", cfg)
	}
}

func TestUnsupportedFieldsAreNamed(t *testing.T) {
	src := `
resources:
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: app
  connect_timeout: 1s
  health_checks: [{timeout: 1s, interval: 1s}]
  lb_subset_config: {fallback_policy: ANY_ENDPOINT}
  load_assignment: {cluster_name: app}
- "@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
  name: r
  virtual_hosts:
  - name: v
    domains: ["*"]
    routes:
    - match: {prefix: /, grpc: {}}
      route: {cluster: app, request_mirror_policies: [{cluster: shadow}]}
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: l
  address: {socket_address: {address: 0.0.0.0, port_value: 1}}
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: l
        rds: {route_config_name: r}
        tracing: {random_sampling: {value: 1}}
        http_filters:
        - name: envoy.filters.http.router
          typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router, suppress_envoy_headers: true}
- "@type": type.googleapis.com/envoy.config.core.v3.Node
  id: x
`
	_, err := Decode([]byte(src))
	if err == nil {
		t.Fatal("Decode accepted unsupported fields")
	}
	for _, want := range []string{
		`resources[0] (Cluster "app").health_checks: unsupported field envoy.config.cluster.v3.Cluster.health_checks`,
		`resources[0] (Cluster "app").lb_subset_config: unsupported field`,
		`routes[0].match.grpc: unsupported field envoy.config.route.v3.RouteMatch.grpc`,
		`routes[0].route.request_mirror_policies: unsupported field envoy.config.route.v3.RouteAction.request_mirror_policies`,
		`typed_config<HttpConnectionManager>.tracing: unsupported field`,
		`http_filters[0].typed_config<Router>.suppress_envoy_headers: unsupported field envoy.extensions.filters.http.router.v3.Router.suppress_envoy_headers`,
		`resources[3]: `,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestTranslateErrors(t *testing.T) {
	b := sampleBundle()
	b.Endpoints = nil
	if _, err := Translate(b, "n", ""); err == nil || !strings.Contains(err.Error(), `no ClusterLoadAssignment "outbound|server"`) {
		t.Errorf("missing EDS resource: %v", err)
	}
	b = sampleBundle()
	b.Listeners[0].TrafficDirection = corev3.TrafficDirection_UNSPECIFIED
	if _, err := Translate(b, "n", ""); err == nil || !strings.Contains(err.Error(), "traffic_direction") {
		t.Errorf("missing direction: %v", err)
	}
}

// FuzzDecode feeds arbitrary bytes to the bundle decoder and translator:
// they may reject input, never panic.
func FuzzDecode(f *testing.F) {
	data, _ := sampleBundle().Marshal()
	f.Add(data)
	f.Add([]byte(`resources: [{"@type": type.googleapis.com/envoy.config.cluster.v3.Cluster, name: x, type: EDS}]`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		b, err := Decode(in)
		if err != nil {
			return
		}
		_, _ = Translate(b, "fuzz", "")
	})
}

func TestDecodeFeatures(t *testing.T) {
	src := `
resources:
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: in
  traffic_direction: INBOUND
  address: {socket_address: {address: 0.0.0.0, port_value: 15006}}
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: in
        codec_type: HTTP2
        http2_protocol_options: {max_concurrent_streams: 10}
        access_log: [{name: envoy.access_loggers.stderr, typed_config: {"@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog}}]
        http_filters:
        - name: envoy.filters.http.rbac
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
            rules:
              action: ALLOW
              policies:
                reads:
                  principals: [{authenticated: {principal_name: {exact: "spiffe://td/ns/default/sa/client"}}}]
                  permissions: [{and_rules: {rules: [{or_rules: {rules: [{url_path: {path: {prefix: /api}}}]}}, {header: {name: ":method", string_match: {exact: GET}}}]}}]
        - name: envoy.filters.http.fault
          typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault}
        - name: envoy.filters.http.router
          typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
        route_config:
          virtual_hosts:
          - name: all
            domains: ["*"]
            routes:
            - match: {prefix: /, headers: [{name: ":method", string_match: {exact: GET}}]}
              route:
                cluster: app
                retry_policy: {retry_on: "5xx,connect-failure", num_retries: 3, per_try_timeout: 0.2s, retriable_request_headers: [{name: ":method", string_match: {exact: POST}}]}
              typed_per_filter_config:
                envoy.filters.http.fault:
                  "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                  delay: {fixed_delay: 0.05s, percentage: {numerator: 25}}
                  abort: {grpc_status: 14, percentage: {numerator: 5000, denominator: TEN_THOUSAND}}
                  headers: [{name: x-chaos, present_match: true}]
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: raw
  traffic_direction: OUTBOUND
  address: {socket_address: {address: 127.0.0.1, port_value: 15009}}
  filter_chains: [{filters: [{name: envoy.filters.network.tcp_proxy, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: raw, cluster: app, idle_timeout: 30s}}]}]
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: app
  type: STATIC
  connect_timeout: 1s
  lb_policy: LEAST_REQUEST
  circuit_breakers: {thresholds: [{max_connections: 10, max_pending_requests: 5, max_requests: 20, retry_budget: {budget_percent: {value: 25}, min_retry_concurrency: 2}}]}
  outlier_detection: {consecutive_5xx: 4, base_ejection_time: 5s, max_ejection_percent: 50}
  load_assignment:
    cluster_name: app
    endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}}]}]
`
	b, err := Decode([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Translate(b, "n", "")
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Listeners[0]
	r := l.VirtualHosts[0].Routes[0]
	c := cfg.Clusters[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"codec", l.Codec, proxy.CodecHTTP2},
		{"streams", l.MaxConcurrentStreams, 10},
		{"access log", l.AccessLog, true},
		{"rbac principal", l.RBAC.Policies[0].Principals[0], "spiffe://td/ns/default/sa/client"},
		{"rbac path", l.RBAC.Policies[0].PathPrefixes[0], "/api"},
		{"rbac method", l.RBAC.Policies[0].Methods[0], "GET"},
		{"route methods", r.Methods[0], "GET"},
		{"retry on", strings.Join(r.Retry.RetryOn, ","), "5xx,connect-failure"},
		{"retries", r.Retry.NumRetries, 3},
		{"per try", r.Retry.PerTryTimeout.D(), 200 * time.Millisecond},
		{"retry methods", r.Retry.Methods[0], "POST"},
		{"delay", r.Fault.Delay.D(), 50 * time.Millisecond},
		{"delay percent", r.Fault.DelayPercent, 25.0},
		{"abort grpc", r.Fault.AbortGRPCStatus, 14},
		{"abort percent", r.Fault.AbortPercent, 50.0},
		{"fault header", r.Fault.Header, "x-chaos"},
		{"tcp cluster", cfg.Listeners[1].TCPCluster, "app"},
		{"lb", c.LBPolicy, proxy.LBLeastRequest},
		{"max conns", c.CircuitBreakers.MaxConnections, 10},
		{"max pending", c.CircuitBreakers.MaxPendingRequests, 5},
		{"max requests", c.CircuitBreakers.MaxRequests, 20},
		{"budget", c.CircuitBreakers.RetryBudgetPercent, 25.0},
		{"min retry", c.CircuitBreakers.MinRetryConcurrency, 2},
		{"5xx", c.Outlier.Consecutive5xx, 4},
		{"ejection", c.Outlier.BaseEjectionTime.D(), 5 * time.Second},
		{"max ejection", c.Outlier.MaxEjectionPercent, 50},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

// TestHTTP2KeepaliveTranslates: Envoy's connection_keepalive on an HTTP/2
// cluster reaches the proxy's cluster, through the wire format (a field
// outside the supported subset would be refused on decode).
func TestHTTP2KeepaliveTranslates(t *testing.T) {
	b := sampleBundle()
	b.Clusters[0] = WithHTTP2Keepalive(WithHTTP2(b.Clusters[0]), time.Second, 2*time.Second)
	cfg := throughBundle(t, b, "client", "10.0.0.2:15000")
	c := cfg.Clusters[0]
	if !c.HTTP2 || c.HTTP2Keepalive == nil || c.HTTP2Keepalive.Interval.D() != time.Second || c.HTTP2Keepalive.Timeout.D() != 2*time.Second {
		t.Errorf("cluster %+v, keepalive %+v", c, c.HTTP2Keepalive)
	}
}

// The HBONE builders render only the subset: a tunnel's sending listener,
// and its end's connect routes under RBAC by source and authority.
func TestHBONETranslates(t *testing.T) {
	tls := &TLSFiles{Cert: "/n.crt", Key: "/n.key", CA: "/ca.crt"}
	caller := "spiffe://td/ns/default/sa/client"
	b := &Bundle{
		VersionInfo: "1",
		Listeners: []*listenerv3.Listener{
			TunnelListener("outbound-server", "127.0.0.1:17000", corev3.TrafficDirection_OUTBOUND, "hbone|server", "server:8080"),
			HBONEListener("hbone", "10.0.0.3:15008", []Destination{{Name: "server", Authorities: []string{"server:8080"},
				Cluster: "inbound|server", Principals: []string{caller}}}, tls, 1000, 3*time.Second),
		},
		Clusters: []*clusterv3.Cluster{WithHTTP2(EDSCluster("hbone|server", time.Second, tls)), EDSCluster("inbound|server", time.Second, nil)},
		Endpoints: []*endpointv3.ClusterLoadAssignment{LoadAssignment("hbone|server", "10.0.0.3:15008"),
			LoadAssignment("inbound|server", "127.0.0.1:8080")},
	}
	cfg := throughBundle(t, b, "node", "")
	if out := cfg.Listeners[0]; out.TCPCluster != "hbone|server" || out.TCPTunnel != "server:8080" {
		t.Errorf("tunnel listener %+v", out)
	}
	end := cfg.Listeners[1]
	rt := end.VirtualHosts[0].Routes[0]
	if end.Codec != proxy.CodecHTTP2 || end.MaxConcurrentStreams != 1000 || !rt.Connect || rt.Cluster != "inbound|server" || rt.PathPrefix != "" ||
		end.HTTP2Keepalive == nil || *end.HTTP2Keepalive != (proxy.Keepalive{Interval: proxy.Duration(3 * time.Second), Timeout: proxy.Duration(3 * time.Second)}) {
		t.Errorf("tunnel end %+v, route %+v", end, rt)
	}
	if p := end.RBAC.Policies; len(p) != 1 || p[0].Principals[0] != caller || len(p[0].Hosts) != 1 || p[0].Hosts[0] != "server:8080" {
		t.Errorf("tunnel end RBAC %+v", end.RBAC)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

// TestInternalTranslates: internal listeners and envoy_internal_address
// endpoints survive the bundle's round trip into the proxy's config, and
// what they cannot mean is refused.
func TestInternalTranslates(t *testing.T) {
	bundle := func() *Bundle {
		return &Bundle{
			VersionInfo: "1",
			Listeners: []*listenerv3.Listener{
				TCPListener("front", "127.0.0.1:9000", corev3.TrafficDirection_INBOUND, "to-main", nil),
				Internal(HTTPListener("main", "", corev3.TrafficDirection_INBOUND, false, Routes("main", []string{"*"}, "app"), nil)),
			},
			Clusters:  []*clusterv3.Cluster{EDSCluster("to-main", time.Second, nil), EDSCluster("app", time.Second, nil)},
			Endpoints: []*endpointv3.ClusterLoadAssignment{InternalLoadAssignment("to-main", InternalEndpoint{Listener: "main", ID: "svc:80"}), LoadAssignment("app", "127.0.0.1:8080")},
		}
	}
	cfg := throughBundle(t, bundle(), "node", "")
	if l := cfg.Listeners[1]; !l.Internal || l.Address != "" {
		t.Errorf("internal listener %+v", l)
	}
	if ep := cfg.Clusters[0].Endpoints; len(ep) != 1 || ep[0] != (proxy.Endpoint{Address: "svc:80", Internal: "main"}) {
		t.Errorf("internal endpoints %+v", ep)
	}
	b := bundle()
	b.Endpoints[0] = InternalLoadAssignment("to-main", InternalEndpoint{Listener: "main", ID: "svc"})
	if _, err := Translate(b, "node", ""); err == nil || !strings.Contains(err.Error(), "endpoint_id host:port") {
		t.Errorf("an endpoint id that is no host:port: %v", err)
	}
	b = bundle()
	b.Listeners[1].Address = b.Listeners[0].Address
	if _, err := Translate(b, "node", ""); err == nil || !strings.Contains(err.Error(), "has no address") {
		t.Errorf("an internal listener with an address: %v", err)
	}
}

// A listener's source addresses reach the proxy as its source ranges;
// any other filter chain criterion is refused by name.
func TestSourcesTranslate(t *testing.T) {
	b := sampleBundle()
	WithSources(b.Listeners[0], netip.MustParseAddr("10.0.0.7"), netip.MustParseAddr("fd00::7"))
	cfg := throughBundle(t, b, "client", "10.0.0.2:15000")
	if got := cfg.Listeners[0].SourceRanges; !slices.Equal(got, []string{"10.0.0.7/32", "fd00::7/128"}) {
		t.Errorf("source ranges %q", got)
	}
	b = sampleBundle()
	b.Listeners[0].FilterChains[0].FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: []string{"a.example"}}
	if _, err := Translate(b, "n", ""); err == nil || !strings.Contains(err.Error(), "only source_prefix_ranges") {
		t.Errorf("a server-name match: %v", err)
	}
	b = sampleBundle()
	b.Listeners[0].FilterChains[0].FilterChainMatch = &listenerv3.FilterChainMatch{SourcePrefixRanges: []*corev3.CidrRange{{AddressPrefix: "10.0.0.0", PrefixLen: wrapperspb.UInt32(33)}}}
	if _, err := Translate(b, "n", ""); err == nil || !strings.Contains(err.Error(), `"10.0.0.0"/33 is no range`) {
		t.Errorf("a /33: %v", err)
	}
	// Unset, Envoy's length is 0: any source. Refused as a likely slip.
	b.Listeners[0].FilterChains[0].FilterChainMatch.SourcePrefixRanges[0].PrefixLen = nil
	if _, err := Translate(b, "n", ""); err == nil || !strings.Contains(err.Error(), "set prefix_len") {
		t.Errorf("no prefix_len: %v", err)
	}
}
