package xds

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The builders below render resources for grpc-go's own xDS client and
// server (proxyless gRPC, gRFC A27/A28/A29/A36/A41), not for meshbench's
// proxy: API listeners, server listeners named by grpc-go's template,
// non-forwarding routes, certificate provider instances and localities,
// none of which the proxy's subset has.

// GRPCServerListenerTemplate is the server listener resource name
// template meshbench's bootstraps give grpc-go (%s is the listening
// address).
const GRPCServerListenerTemplate = "grpc/server?xds.resource.listening_address=%s"

// GRPCCertificateProvider is the bootstrap's certificate provider
// instance that xDS-described mutual TLS refers to.
const GRPCCertificateProvider = "mesh"

// GRPCBootstrap is a grpc-go xDS bootstrap: the control plane at server
// over mutual TLS with the workload's identity (files), the node ID, and
// the same identity as the certificate provider of the mutual TLS the
// control plane describes.
func GRPCBootstrap(server, node string, files TLSFiles) ([]byte, error) {
	pem := map[string]string{"certificate_file": files.Cert, "private_key_file": files.Key, "ca_certificate_file": files.CA}
	provider := map[string]string{"refresh_interval": "600s"}
	for k, v := range pem {
		provider[k] = v
	}
	return json.MarshalIndent(map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri":      server,
			"channel_creds":   []any{map[string]any{"type": "tls", "config": pem}},
			"server_features": []string{"xds_v3"},
		}},
		"node": map[string]string{"id": node},
		"certificate_providers": map[string]any{GRPCCertificateProvider: map[string]any{
			"plugin_name": "file_watcher", "config": provider,
		}},
		"server_listener_resource_name_template": GRPCServerListenerTemplate,
	}, "", "  ")
}

// providerTLS is mutual TLS from the bootstrap's certificate provider,
// accepting peer (a SPIFFE ID) when set.
func providerTLS(peer string) *tlsv3.CommonTlsContext {
	vc := &tlsv3.CertificateValidationContext{CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: GRPCCertificateProvider}}
	if peer != "" {
		vc.MatchSubjectAltNames = []*matcherv3.StringMatcher{{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: peer}}}
	}
	return &tlsv3.CommonTlsContext{
		TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: GRPCCertificateProvider},
		ValidationContextType:          &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc},
	}
}

func routerFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: RouterFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}}
}

// GRPCClientListener is the API listener of the target xds:///target
// (a service's authority), routing every call to cluster.
func GRPCClientListener(target, cluster string) *listenerv3.Listener {
	return &listenerv3.Listener{Name: target, ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(&hcmv3.HttpConnectionManager{
		StatPrefix:     "outbound",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: Routes(target, []string{target}, cluster)},
		HttpFilters:    []*hcmv3.HttpFilter{routerFilter()},
	})}}
}

// GRPCCluster is an EDS cluster (endpoints over the same ADS stream)
// whose connections are mutual TLS accepting only peer.
func GRPCCluster(name, peer string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}},
		TransportSocket: &corev3.TransportSocket{Name: TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{
			TypedConfig: mustAny(&tlsv3.UpstreamTlsContext{CommonTlsContext: providerTLS(peer)})}},
	}
}

// GRPCLoadAssignment is cluster's endpoint addr in a named, weighted
// locality, which grpc-go requires (it NACKs a locality without them).
func GRPCLoadAssignment(cluster, addr string) *endpointv3.ClusterLoadAssignment {
	cla := LoadAssignment(cluster, addr)
	cla.Endpoints[0].Locality = &corev3.Locality{Region: "meshbench", Zone: "local"}
	cla.Endpoints[0].LoadBalancingWeight = wrapperspb.UInt32(1)
	return cla
}

// GRPCServerListener is the listener of a grpc-go xDS server at addr:
// mutual TLS from the certificate provider, and RBAC allowing only the
// callers' SPIFFE IDs (none: every call is denied, PERMISSION_DENIED).
func GRPCServerListener(addr string, callers []string) (*listenerv3.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, err
	}
	policy := &rbacconfigv3.Policy{Permissions: []*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_Any{Any: true}}}}
	for _, id := range callers {
		policy.Principals = append(policy.Principals, &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Authenticated_{
			Authenticated: &rbacconfigv3.Principal_Authenticated{PrincipalName: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: id}}}}})
	}
	rules := &rbacconfigv3.RBAC{Action: rbacconfigv3.RBAC_ALLOW, Policies: map[string]*rbacconfigv3.Policy{}}
	if len(policy.Principals) > 0 {
		rules.Policies["callers"] = policy
	}
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "inbound",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: "inbound", VirtualHosts: []*routev3.VirtualHost{{
			Name: "inbound", Domains: []string{"*"},
			Routes: []*routev3.Route{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}}}},
		}}}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: RBACFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&rbacv3.RBAC{Rules: rules})}},
			routerFilter(),
		},
	}
	return &listenerv3.Listener{
		Name:    fmt.Sprintf(GRPCServerListenerTemplate, addr),
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)}}}},
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{Name: HTTPConnectionManager, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)}}},
			TransportSocket: &corev3.TransportSocket{Name: TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(
				&tlsv3.DownstreamTlsContext{CommonTlsContext: providerTLS(""), RequireClientCertificate: wrapperspb.Bool(true)})}},
		}},
	}, nil
}
