package xds

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshbench/meshbench/proxy"
)

// Well-known extension names.
const (
	HTTPConnectionManager = "envoy.filters.network.http_connection_manager"
	TCPProxyFilter        = "envoy.filters.network.tcp_proxy"
	RouterFilter          = "envoy.filters.http.router"
	TLSTransportSocket    = "envoy.transport_sockets.tls"
	UpstreamHTTPOptions   = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// Socket option numbers (Linux) for SO_MARK, as Envoy configurations write
// them.
const (
	SolSocket = 1
	SoMark    = 36
)

// Translate compiles a bundle into the proxy's Config. node names the
// proxy; admin is its admin address.
func Translate(b *Bundle, node, admin string) (*proxy.Config, error) {
	t := translator{b: b, routes: map[string]*routev3.RouteConfiguration{}, cla: map[string]*endpointv3.ClusterLoadAssignment{}}
	for _, r := range b.Routes {
		t.routes[r.GetName()] = r
	}
	for _, e := range b.Endpoints {
		t.cla[e.GetClusterName()] = e
	}
	cfg := &proxy.Config{Node: node, Admin: admin}
	for _, l := range b.Listeners {
		pl, err := t.listener(l)
		if err != nil {
			t.errs = append(t.errs, fmt.Errorf("listener %q: %w", l.GetName(), err))
			continue
		}
		cfg.Listeners = append(cfg.Listeners, *pl)
	}
	for _, c := range b.Clusters {
		pc, err := t.cluster(c)
		if err != nil {
			t.errs = append(t.errs, fmt.Errorf("cluster %q: %w", c.GetName(), err))
			continue
		}
		cfg.Clusters = append(cfg.Clusters, *pc)
	}
	if err := errors.Join(t.errs...); err != nil {
		return nil, err
	}
	cfg.Normalize()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

type translator struct {
	b      *Bundle
	routes map[string]*routev3.RouteConfiguration
	cla    map[string]*endpointv3.ClusterLoadAssignment
	errs   []error
}

func socketAddress(a *corev3.Address) (string, error) {
	sa := a.GetSocketAddress()
	if sa == nil {
		return "", errors.New("address: want a socket_address")
	}
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		return "", fmt.Errorf("address: protocol %s is not supported (TCP only)", sa.GetProtocol())
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))), nil
}

func dur(d *durationpb.Duration) proxy.Duration {
	if d == nil {
		return 0
	}
	return proxy.Duration(d.AsDuration())
}

func (t *translator) listener(l *listenerv3.Listener) (*proxy.Listener, error) {
	pl := &proxy.Listener{Name: l.GetName()}
	var err error
	if l.GetInternalListener() != nil {
		if l.GetAddress() != nil {
			return nil, errors.New("internal_listener: an internal listener has no address")
		}
		pl.Internal = true
	} else if pl.Address, err = socketAddress(l.GetAddress()); err != nil {
		return nil, err
	}
	switch l.GetTrafficDirection() {
	case corev3.TrafficDirection_INBOUND:
		pl.Direction = proxy.Inbound
	case corev3.TrafficDirection_OUTBOUND:
		pl.Direction = proxy.Outbound
	default:
		return nil, errors.New("traffic_direction: set INBOUND or OUTBOUND")
	}
	if len(l.GetFilterChains()) != 1 {
		return nil, fmt.Errorf("filter_chains: want exactly one, got %d", len(l.GetFilterChains()))
	}
	fc := l.GetFilterChains()[0]
	if pl.SourceRanges, err = sourceRanges(fc.GetFilterChainMatch()); err != nil {
		return nil, err
	}
	if ts := fc.GetTransportSocket(); ts != nil {
		if pl.TLS, err = downstreamTLS(ts); err != nil {
			return nil, err
		}
	}
	if len(fc.GetFilters()) == 1 && fc.GetFilters()[0].GetName() == TCPProxyFilter {
		var tp tcpproxyv3.TcpProxy
		if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(&tp); err != nil {
			return nil, fmt.Errorf("%s: %w", TCPProxyFilter, err)
		}
		if tp.GetCluster() == "" {
			return nil, fmt.Errorf("%s: set cluster", TCPProxyFilter)
		}
		pl.TCPCluster = tp.GetCluster()
		pl.IdleTimeout = dur(tp.GetIdleTimeout())
		if tc := tp.GetTunnelingConfig(); tc != nil {
			// The authority is taken as written: the proxy expands no
			// command operators (%...%).
			if tc.GetHostname() == "" || strings.Contains(tc.GetHostname(), "%") {
				return nil, fmt.Errorf("%s: tunneling_config.hostname: want a literal host:port, got %q", TCPProxyFilter, tc.GetHostname())
			}
			pl.TCPTunnel = tc.GetHostname()
		}
		return pl, nil
	}
	if len(fc.GetFilters()) != 1 || fc.GetFilters()[0].GetName() != HTTPConnectionManager {
		return nil, fmt.Errorf("filter chain: want one %s or %s filter", HTTPConnectionManager, TCPProxyFilter)
	}
	var hcm hcmv3.HttpConnectionManager
	if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		return nil, fmt.Errorf("%s: %w", HTTPConnectionManager, err)
	}
	return pl, t.hcm(&hcm, pl)
}

// sourceRanges reads a filter chain's match: source prefix ranges, the
// only criterion the proxy implements (with one filter chain, a
// connection that does not match is closed).
func sourceRanges(m *listenerv3.FilterChainMatch) ([]string, error) {
	if m == nil {
		return nil, nil
	}
	rest := proto.Clone(m).(*listenerv3.FilterChainMatch)
	rest.SourcePrefixRanges = nil
	if proto.Size(rest) > 0 {
		return nil, fmt.Errorf("filter_chain_match: only source_prefix_ranges is supported, got %v", rest)
	}
	var out []string
	for _, r := range m.GetSourcePrefixRanges() {
		// An unset length is Envoy's /0, any source: for an access
		// filter, more likely a mistake than meant.
		a, err := netip.ParseAddr(r.GetAddressPrefix())
		if err != nil || r.GetPrefixLen() == nil || r.GetPrefixLen().GetValue() > uint32(a.BitLen()) {
			return nil, fmt.Errorf("filter_chain_match.source_prefix_ranges: %q/%v is no range (set prefix_len, 0 for any source)", r.GetAddressPrefix(), r.GetPrefixLen().GetValue())
		}
		out = append(out, netip.PrefixFrom(a, int(r.GetPrefixLen().GetValue())).Masked().String())
	}
	return out, nil
}

func (t *translator) hcm(h *hcmv3.HttpConnectionManager, pl *proxy.Listener) error {
	switch h.GetCodecType() {
	case hcmv3.HttpConnectionManager_AUTO:
		pl.Codec = proxy.CodecAuto
	case hcmv3.HttpConnectionManager_HTTP1:
		pl.Codec = proxy.CodecHTTP1
	case hcmv3.HttpConnectionManager_HTTP2:
		pl.Codec = proxy.CodecHTTP2
	default:
		return fmt.Errorf("codec_type %s is not supported (AUTO, HTTP1, HTTP2)", h.GetCodecType())
	}
	if n := h.GetHttp2ProtocolOptions().GetMaxConcurrentStreams(); n != nil {
		pl.MaxConcurrentStreams = int(n.GetValue())
	}
	pl.HTTP2Keepalive = keepalive(h.GetHttp2ProtocolOptions().GetConnectionKeepalive())
	faultEnabled, err := httpFilters(h, pl)
	if err != nil {
		return err
	}
	for i, al := range h.GetAccessLog() {
		if al.GetName() != "envoy.access_loggers.stderr" && al.GetName() != "envoy.access_loggers.stdout" {
			return fmt.Errorf("access_log[%d]: %q is not supported (envoy.access_loggers.stderr)", i, al.GetName())
		}
		pl.AccessLog = true
	}
	if h.GetUseRemoteAddress().GetValue() {
		pl.ForwardedFor = proxy.ForwardedAppend
	} else {
		pl.ForwardedFor = proxy.ForwardedNone
	}
	pl.RequestTimeout = dur(h.GetRequestTimeout())
	pl.HeaderTimeout = dur(h.GetRequestHeadersTimeout())
	pl.IdleTimeout = dur(h.GetCommonHttpProtocolOptions().GetIdleTimeout())
	if kb := h.GetMaxRequestHeadersKb(); kb != nil {
		pl.MaxHeaderBytes = int(kb.GetValue()) << 10
	}
	rc := h.GetRouteConfig()
	if rds := h.GetRds(); rds != nil {
		rc = t.routes[rds.GetRouteConfigName()]
		if rc == nil {
			return fmt.Errorf("rds: no RouteConfiguration %q in the bundle", rds.GetRouteConfigName())
		}
	}
	if rc == nil {
		return errors.New("http_connection_manager: set route_config or rds")
	}
	for _, vh := range rc.GetVirtualHosts() {
		pv := proxy.VirtualHost{Name: vh.GetName(), Domains: vh.GetDomains(), RequestHeadersToRemove: vh.GetRequestHeadersToRemove()}
		for _, hv := range vh.GetRequestHeadersToAdd() {
			if hv.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				return fmt.Errorf("virtual host %q: request_headers_to_add supports append_action OVERWRITE_IF_EXISTS_OR_ADD only", vh.GetName())
			}
			pv.RequestHeadersToAdd = append(pv.RequestHeadersToAdd, proxy.Header{Name: hv.GetHeader().GetKey(), Value: hv.GetHeader().GetValue()})
		}
		for j, r := range vh.GetRoutes() {
			pr, err := route(r)
			if err == nil {
				err = routeFeatures(r, &pr, faultEnabled)
			}
			if err != nil {
				return fmt.Errorf("virtual host %q routes[%d]: %w", vh.GetName(), j, err)
			}
			pv.Routes = append(pv.Routes, pr)
		}
		pl.VirtualHosts = append(pl.VirtualHosts, pv)
	}
	return nil
}

func route(r *routev3.Route) (proxy.Route, error) {
	pr := proxy.Route{Name: r.GetName()}
	m := r.GetMatch()
	switch {
	case m.GetPath() != "":
		pr.Path = m.GetPath()
	case m.GetSafeRegex() != nil:
		pr.Regex = m.GetSafeRegex().GetRegex()
	case m.GetPathSeparatedPrefix() != "":
		pr.PathPrefix, pr.Segments = m.GetPathSeparatedPrefix(), true
	case m.GetConnectMatcher() != nil:
		pr.Connect = true
	default:
		pr.PathPrefix = m.GetPrefix()
	}
	if rd := r.GetRedirect(); rd != nil {
		return pr, redirectAction(rd, &pr)
	}
	a := r.GetRoute()
	switch {
	case a == nil:
		return pr, errors.New("route: want a route action (cluster or weighted_clusters) or a redirect")
	case a.GetCluster() != "":
		pr.Cluster = a.GetCluster()
	case a.GetWeightedClusters() != nil:
		for _, cw := range a.GetWeightedClusters().GetClusters() {
			pr.WeightedClusters = append(pr.WeightedClusters, proxy.WeightedCluster{
				Name: cw.GetName(), Weight: int(cw.GetWeight().GetValue()), HostRewrite: cw.GetHostRewriteLiteral()})
		}
	default:
		return pr, errors.New("route: want a route action with a cluster or weighted_clusters")
	}
	// A CONNECT route ends the stream here (the CONNECT upgrade with
	// connect_config), carrying its bytes to the cluster; the proxy does
	// no other upgrade.
	for _, u := range a.GetUpgradeConfigs() {
		if !strings.EqualFold(u.GetUpgradeType(), "CONNECT") || u.GetConnectConfig() == nil || !pr.Connect {
			return pr, errors.New("upgrade_configs: only CONNECT with connect_config, on a connect_matcher route")
		}
	}
	if pr.Connect && len(a.GetUpgradeConfigs()) == 0 {
		return pr, errors.New("connect_matcher: the route action needs the CONNECT upgrade (upgrade_configs with connect_config)")
	}
	pr.Timeout = dur(a.GetTimeout())
	pr.PrefixRewrite = a.GetPrefixRewrite()
	pr.HostRewrite = a.GetHostRewriteLiteral()
	if rr := a.GetRegexRewrite(); rr != nil {
		// The one regex rewrite the proxy does: the whole path replaced
		// (a Gateway API ReplaceFullPath).
		if p := rr.GetPattern().GetRegex(); p != "^.*$" && p != ".*" {
			return pr, fmt.Errorf("regex_rewrite: only a pattern matching the whole path (^.*$) is supported, got %q", p)
		}
		pr.PathRewrite = rr.GetSubstitution()
	}
	return pr, nil
}

func (t *translator) cluster(c *clusterv3.Cluster) (*proxy.Cluster, error) {
	pc := &proxy.Cluster{Name: c.GetName(), ConnectTimeout: dur(c.GetConnectTimeout()),
		IdleTimeout: dur(c.GetCommonHttpProtocolOptions().GetIdleTimeout())}
	if err := clusterFeatures(c, pc); err != nil {
		return nil, err
	}
	var cla *endpointv3.ClusterLoadAssignment
	switch c.GetType() {
	case clusterv3.Cluster_STATIC:
		cla = c.GetLoadAssignment()
	case clusterv3.Cluster_EDS:
		name := c.GetEdsClusterConfig().GetServiceName()
		if name == "" {
			name = c.GetName()
		}
		if cla = t.cla[name]; cla == nil {
			return nil, fmt.Errorf("eds: no ClusterLoadAssignment %q in the bundle", name)
		}
	default:
		return nil, fmt.Errorf("type %s is not supported (STATIC, EDS)", c.GetType())
	}
	for _, lle := range cla.GetEndpoints() {
		for _, lbe := range lle.GetLbEndpoints() {
			a := lbe.GetEndpoint().GetAddress()
			if ia := a.GetEnvoyInternalAddress(); ia != nil {
				// The id names the endpoint in the cluster's pool: the
				// proxy needs one per endpoint, as host:port.
				if _, _, err := net.SplitHostPort(ia.GetEndpointId()); err != nil || ia.GetServerListenerName() == "" {
					return nil, fmt.Errorf("envoy_internal_address: want a server_listener_name and an endpoint_id host:port, got %q and %q", ia.GetServerListenerName(), ia.GetEndpointId())
				}
				pc.Endpoints = append(pc.Endpoints, proxy.Endpoint{Address: ia.GetEndpointId(), Internal: ia.GetServerListenerName()})
				continue
			}
			addr, err := socketAddress(a)
			if err != nil {
				return nil, err
			}
			pc.Endpoints = append(pc.Endpoints, proxy.Endpoint{Address: addr})
		}
	}
	if ts := c.GetTransportSocket(); ts != nil {
		var err error
		if pc.TLS, err = upstreamTLS(ts); err != nil {
			return nil, err
		}
	}
	if bc := c.GetUpstreamBindConfig(); bc != nil {
		if sa := bc.GetSourceAddress(); sa != nil && (sa.GetPortValue() != 0 || (sa.GetAddress() != "0.0.0.0" && sa.GetAddress() != "")) {
			return nil, errors.New("upstream_bind_config.source_address: only 0.0.0.0:0 (any) is supported")
		}
		for _, o := range bc.GetSocketOptions() {
			if o.GetLevel() != SolSocket || o.GetName() != SoMark || o.GetState() != corev3.SocketOption_STATE_PREBIND {
				return nil, fmt.Errorf("upstream_bind_config.socket_options: only SO_MARK (level %d, name %d) before bind is supported", SolSocket, SoMark)
			}
			pc.Mark = int(o.GetIntValue())
		}
	}
	for name, a := range c.GetTypedExtensionProtocolOptions() {
		var po upstreamhttpv3.HttpProtocolOptions
		if name != UpstreamHTTPOptions || a.UnmarshalTo(&po) != nil {
			return nil, fmt.Errorf("typed_extension_protocol_options: only %s is supported", UpstreamHTTPOptions)
		}
		h2 := po.GetExplicitHttpConfig().GetHttp2ProtocolOptions()
		pc.HTTP2 = h2 != nil
		pc.HTTP2Keepalive = keepalive(h2.GetConnectionKeepalive())
		if idle := po.GetCommonHttpProtocolOptions().GetIdleTimeout(); idle != nil {
			pc.IdleTimeout = dur(idle)
		}
	}
	return pc, nil
}

func downstreamTLS(ts *corev3.TransportSocket) (*proxy.TLS, error) {
	var d tlsv3.DownstreamTlsContext
	if ts.GetName() != TLSTransportSocket || ts.GetTypedConfig().UnmarshalTo(&d) != nil {
		return nil, fmt.Errorf("transport_socket: want %s with a DownstreamTlsContext", TLSTransportSocket)
	}
	if !d.GetRequireClientCertificate().GetValue() {
		return nil, errors.New("transport_socket: require_client_certificate must be true (the mesh is mutual TLS only)")
	}
	return commonTLS(d.GetCommonTlsContext())
}

func upstreamTLS(ts *corev3.TransportSocket) (*proxy.TLS, error) {
	var u tlsv3.UpstreamTlsContext
	if ts.GetName() != TLSTransportSocket || ts.GetTypedConfig().UnmarshalTo(&u) != nil {
		return nil, fmt.Errorf("transport_socket: want %s with an UpstreamTlsContext", TLSTransportSocket)
	}
	return commonTLS(u.GetCommonTlsContext())
}

func commonTLS(c *tlsv3.CommonTlsContext) (*proxy.TLS, error) {
	if len(c.GetTlsCertificates()) != 1 {
		return nil, errors.New("tls_certificates: want exactly one (the workload's identity)")
	}
	cert := c.GetTlsCertificates()[0]
	vc := c.GetValidationContext()
	t := &proxy.TLS{
		CertFile: cert.GetCertificateChain().GetFilename(),
		KeyFile:  cert.GetPrivateKey().GetFilename(),
		CAFile:   vc.GetTrustedCa().GetFilename(),
	}
	if t.CertFile == "" || t.KeyFile == "" || t.CAFile == "" {
		return nil, errors.New("tls: certificate_chain, private_key and validation_context.trusted_ca must be files")
	}
	for _, m := range vc.GetMatchTypedSubjectAltNames() {
		if m.GetSanType() != tlsv3.SubjectAltNameMatcher_URI || m.GetMatcher().GetExact() == "" {
			return nil, errors.New("match_typed_subject_alt_names: only exact URI (SPIFFE ID) matchers are supported")
		}
		t.AllowedIDs = append(t.AllowedIDs, m.GetMatcher().GetExact())
	}
	return t, nil
}

// keepalive is Envoy's connection_keepalive as the proxy's, nil when unset.
func keepalive(k *corev3.KeepaliveSettings) *proxy.Keepalive {
	if k == nil {
		return nil
	}
	return &proxy.Keepalive{Interval: dur(k.GetInterval()), Timeout: dur(k.GetTimeout())}
}
