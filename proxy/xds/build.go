package xds

import (
	"net"
	"net/netip"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The builders below render the resources meshes hand to the proxy. They
// use only what the supported subset understands.

// TLSFiles is a mutual-TLS identity on disk plus the peer IDs to accept.
type TLSFiles struct {
	Cert, Key, CA string
	PeerIDs       []string
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err) // only registered, well-formed messages reach here
	}
	return a
}

func address(hostport string) *corev3.Address {
	host, port, _ := net.SplitHostPort(hostport)
	p, _ := strconv.Atoi(port)
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
	}}}
}

func commonTLSContext(t *TLSFiles) *tlsv3.CommonTlsContext {
	file := func(f string) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: f}}
	}
	vc := &tlsv3.CertificateValidationContext{TrustedCa: file(t.CA)}
	for _, id := range t.PeerIDs {
		vc.MatchTypedSubjectAltNames = append(vc.MatchTypedSubjectAltNames, &tlsv3.SubjectAltNameMatcher{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: id}},
		})
	}
	return &tlsv3.CommonTlsContext{
		TlsCertificates:       []*tlsv3.TlsCertificate{{CertificateChain: file(t.Cert), PrivateKey: file(t.Key)}},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc},
	}
}

// HTTPListener is a listener with one HTTP connection manager whose routes
// are inline. tls (optional) makes it accept only mutual TLS.
func HTTPListener(name, addr string, dir corev3.TrafficDirection, appendXFF bool, rc *routev3.RouteConfiguration, tls *TLSFiles) *listenerv3.Listener {
	return listener(name, addr, dir, appendXFF, hcmv3.HttpConnectionManager_AUTO, rc, tls)
}

// HTTP2Listener is HTTPListener accepting HTTP/2 only (a tunnel endpoint).
func HTTP2Listener(name, addr string, dir corev3.TrafficDirection, rc *routev3.RouteConfiguration, tls *TLSFiles) *listenerv3.Listener {
	return listener(name, addr, dir, false, hcmv3.HttpConnectionManager_HTTP2, rc, tls)
}

func listener(name, addr string, dir corev3.TrafficDirection, appendXFF bool, codec hcmv3.HttpConnectionManager_CodecType, rc *routev3.RouteConfiguration, tls *TLSFiles) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		CodecType:        codec,
		StatPrefix:       name,
		RouteSpecifier:   &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc},
		HttpFilters:      []*hcmv3.HttpFilter{{Name: RouterFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}}},
		UseRemoteAddress: wrapperspb.Bool(appendXFF),
	}
	return filterListener(name, addr, dir, HTTPConnectionManager, hcm, tls)
}

// TCPListener is a listener forwarding every connection's bytes to
// cluster (Envoy's tcp_proxy). tls (optional) makes it accept only mutual
// TLS.
func TCPListener(name, addr string, dir corev3.TrafficDirection, cluster string, tls *TLSFiles) *listenerv3.Listener {
	tp := &tcpproxyv3.TcpProxy{StatPrefix: name, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster}}
	return filterListener(name, addr, dir, TCPProxyFilter, tp, tls)
}

// filterListener is a listener of one filter chain with one network
// filter.
func filterListener(name, addr string, dir corev3.TrafficDirection, filter string, config proto.Message, tls *TLSFiles) *listenerv3.Listener {
	fc := &listenerv3.FilterChain{Filters: []*listenerv3.Filter{{
		Name: filter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(config)},
	}}}
	if tls != nil {
		fc.TransportSocket = &corev3.TransportSocket{Name: TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{
			TypedConfig: mustAny(&tlsv3.DownstreamTlsContext{CommonTlsContext: commonTLSContext(tls), RequireClientCertificate: wrapperspb.Bool(true)}),
		}}
	}
	return &listenerv3.Listener{Name: name, Address: address(addr), TrafficDirection: dir, FilterChains: []*listenerv3.FilterChain{fc}}
}

// Routes is a route configuration with one virtual host sending every path
// to cluster.
func Routes(name string, domains []string, cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
		Name: name, Domains: domains,
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
		}},
	}}}
}

// EDSCluster is a round-robin cluster whose endpoints come from a
// ClusterLoadAssignment of the same name; tls (optional) makes its
// connections mutual TLS.
func EDSCluster(name string, connectTimeout time.Duration, tls *TLSFiles) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		ConnectTimeout:       durationpb.New(connectTimeout),
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{ServiceName: name},
	}
	if tls != nil {
		c.TransportSocket = &corev3.TransportSocket{Name: TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{
			TypedConfig: mustAny(&tlsv3.UpstreamTlsContext{CommonTlsContext: commonTLSContext(tls)}),
		}}
	}
	return c
}

// WithHTTP2 makes a cluster's connections HTTP/2, multiplexing requests.
func WithHTTP2(c *clusterv3.Cluster) *clusterv3.Cluster {
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{UpstreamHTTPOptions: mustAny(&upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
		}},
	})}
	return c
}

// WithHTTP2Keepalive makes an HTTP/2 cluster (WithHTTP2) ping a connection
// on which nothing arrived for interval and close it when no answer comes
// within timeout (Envoy's connection_keepalive).
func WithHTTP2Keepalive(c *clusterv3.Cluster, interval, timeout time.Duration) *clusterv3.Cluster {
	var po upstreamhttpv3.HttpProtocolOptions
	if a := c.GetTypedExtensionProtocolOptions()[UpstreamHTTPOptions]; a == nil || a.UnmarshalTo(&po) != nil || po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		panic("WithHTTP2Keepalive: cluster " + c.GetName() + " is not HTTP/2 (WithHTTP2 first)")
	}
	po.GetExplicitHttpConfig().GetHttp2ProtocolOptions().ConnectionKeepalive = keepaliveSettings(interval, timeout)
	c.TypedExtensionProtocolOptions[UpstreamHTTPOptions] = mustAny(&po)
	return c
}

// keepaliveSettings is Envoy's connection_keepalive: a PING after interval
// of quiet, the connection closed when no answer comes within timeout.
func keepaliveSettings(interval, timeout time.Duration) *corev3.KeepaliveSettings {
	return &corev3.KeepaliveSettings{Interval: durationpb.New(interval), Timeout: durationpb.New(timeout)}
}

// WithMaxRequests sets a cluster's circuit breaker on active requests (for
// an HTTP/2 cluster, its streams; for a tunnel cluster, the connections it
// carries), leaving the other thresholds at their defaults.
func WithMaxRequests(c *clusterv3.Cluster, n uint32) *clusterv3.Cluster {
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		MaxRequests: wrapperspb.UInt32(n)}}}
	return c
}

// WithHeaders makes a route configuration's virtual hosts remove the named
// request headers and then set the given ones.
func WithHeaders(rc *routev3.RouteConfiguration, remove []string, set map[string]string) *routev3.RouteConfiguration {
	for _, vh := range rc.GetVirtualHosts() {
		vh.RequestHeadersToRemove = append(vh.RequestHeadersToRemove, remove...)
		for k, v := range set {
			vh.RequestHeadersToAdd = append(vh.RequestHeadersToAdd, &corev3.HeaderValueOption{
				Header:       &corev3.HeaderValue{Key: k, Value: v},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			})
		}
	}
	return rc
}

// WithMark makes a cluster mark its upstream sockets (SO_MARK), so that
// interception rules can exclude the proxy's own traffic.
func WithMark(c *clusterv3.Cluster, mark int) *clusterv3.Cluster {
	c.UpstreamBindConfig = &corev3.BindConfig{
		SourceAddress: &corev3.SocketAddress{Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 0}},
		SocketOptions: []*corev3.SocketOption{{
			Description: "mark the proxy's own traffic",
			Level:       SolSocket, Name: SoMark,
			Value: &corev3.SocketOption_IntValue{IntValue: int64(mark)},
		}},
	}
	return c
}

// WithSources makes a listener take connections from these addresses
// only (each the range of it alone): its filter chain matches them
// (filter_chain_match.source_prefix_ranges), and Envoy, as the proxy,
// closes a connection that matches no filter chain.
func WithSources(l *listenerv3.Listener, addrs ...netip.Addr) *listenerv3.Listener {
	m := &listenerv3.FilterChainMatch{}
	for _, a := range addrs {
		m.SourcePrefixRanges = append(m.SourcePrefixRanges, &corev3.CidrRange{
			AddressPrefix: a.String(), PrefixLen: wrapperspb.UInt32(uint32(a.BitLen()))})
	}
	for _, fc := range l.FilterChains {
		fc.FilterChainMatch = m
	}
	return l
}

// LoadAssignment lists a cluster's endpoints.
func LoadAssignment(cluster string, endpoints ...string) *endpointv3.ClusterLoadAssignment {
	var lbs []*endpointv3.LbEndpoint
	for _, e := range endpoints {
		lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: address(e)},
		}})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: cluster, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}}
}

// Internal makes l an internal listener (Envoy's internal_listener): no
// address; the proxy's clusters connect to it by name (InternalEndpoint).
func Internal(l *listenerv3.Listener) *listenerv3.Listener {
	l.Address = nil
	l.ListenerSpecifier = &listenerv3.Listener_InternalListener{InternalListener: &listenerv3.Listener_InternalListenerConfig{}}
	return l
}

// InternalEndpoint is an endpoint that is the internal listener called
// Listener, named ID (host:port) in its cluster.
type InternalEndpoint struct{ Listener, ID string }

// InternalLoadAssignment lists a cluster's internal endpoints.
func InternalLoadAssignment(cluster string, endpoints ...InternalEndpoint) *endpointv3.ClusterLoadAssignment {
	var lbs []*endpointv3.LbEndpoint
	for _, e := range endpoints {
		lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{Address: &corev3.Address_EnvoyInternalAddress{
				EnvoyInternalAddress: &corev3.EnvoyInternalAddress{
					AddressNameSpecifier: &corev3.EnvoyInternalAddress_ServerListenerName{ServerListenerName: e.Listener},
					EndpointId:           e.ID,
				}}}},
		}})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: cluster, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}}
}

// TunnelListener is a TCPListener whose connections are carried as HTTP/2
// CONNECT streams naming authority, over cluster's pooled connections
// (HBONE's sending end; the cluster must be HTTP/2).
func TunnelListener(name, addr string, dir corev3.TrafficDirection, cluster, authority string) *listenerv3.Listener {
	tp := &tcpproxyv3.TcpProxy{StatPrefix: name, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
		TunnelingConfig: &tcpproxyv3.TcpProxy_TunnelingConfig{Hostname: authority}}
	return filterListener(name, addr, dir, TCPProxyFilter, tp, nil)
}

// Destination is what a tunnel's end hands on: the CONNECT streams naming
// one of Authorities go to Cluster, if their source is one of Principals.
type Destination struct {
	Name        string
	Authorities []string
	Cluster     string
	Principals  []string
}

// HBONEListener ends CONNECT streams (HTTP/2 only, mutual TLS): a virtual
// host per destination, whose connect route carries the streams' bytes to
// its cluster, under RBAC allowing each destination's principals only.
// maxStreams bounds the streams of one connection: each carries a
// connection for its whole life. keepalive, when not zero, is the PING
// interval and timeout on a connection gone silent, so that a dead peer's
// streams end (connection_keepalive).
func HBONEListener(name, addr string, dests []Destination, tls *TLSFiles, maxStreams uint32, keepalive time.Duration) *listenerv3.Listener {
	rc := &routev3.RouteConfiguration{Name: name}
	rules := &rbacconfigv3.RBAC{Action: rbacconfigv3.RBAC_ALLOW, Policies: map[string]*rbacconfigv3.Policy{}}
	for _, d := range dests {
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: d.Name, Domains: d.Authorities,
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_ConnectMatcher_{ConnectMatcher: &routev3.RouteMatch_ConnectMatcher{}}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: d.Cluster},
					UpgradeConfigs: []*routev3.RouteAction_UpgradeConfig{{UpgradeType: "CONNECT",
						ConnectConfig: &routev3.RouteAction_UpgradeConfig_ConnectConfig{}}},
				}},
			}}})
		pol := &rbacconfigv3.Policy{}
		for _, p := range d.Principals {
			pol.Principals = append(pol.Principals, &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Authenticated_{
				Authenticated: &rbacconfigv3.Principal_Authenticated{PrincipalName: &matcherv3.StringMatcher{
					MatchPattern: &matcherv3.StringMatcher_Exact{Exact: p}}}}})
		}
		var hosts []*rbacconfigv3.Permission
		for _, a := range d.Authorities {
			hosts = append(hosts, &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_Header{Header: &routev3.HeaderMatcher{
				Name: ":authority", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
					MatchPattern: &matcherv3.StringMatcher_Exact{Exact: a}}}}}})
		}
		pol.Permissions = []*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_OrRules{OrRules: &rbacconfigv3.Permission_Set{Rules: hosts}}}}
		rules.Policies[d.Name] = pol
	}
	l := listener(name, addr, corev3.TrafficDirection_INBOUND, false, hcmv3.HttpConnectionManager_HTTP2, rc, tls)
	var hcm hcmv3.HttpConnectionManager
	if err := l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		panic(err) // built just above
	}
	hcm.HttpFilters = append([]*hcmv3.HttpFilter{{Name: RBACFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{
		TypedConfig: mustAny(&rbacfilterv3.RBAC{Rules: rules})}}}, hcm.HttpFilters...)
	hcm.Http2ProtocolOptions = &corev3.Http2ProtocolOptions{MaxConcurrentStreams: wrapperspb.UInt32(maxStreams)}
	if keepalive > 0 {
		hcm.Http2ProtocolOptions.ConnectionKeepalive = keepaliveSettings(keepalive, keepalive)
	}
	l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&hcm)}
	return l
}
