package controlplane

import (
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"

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
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	grpcxds "google.golang.org/grpc/xds"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshbench/meshbench/proxy/identity"
	"github.com/meshbench/meshbench/proxy/xds"
)

// grpcBootstrap is a grpc-go xDS bootstrap: the control plane at cp, node
// id, and the workload's certificate as the "mesh" certificate provider
// that xDS-configured mutual TLS refers to.
func grpcBootstrap(t *testing.T, cp, node string, f identity.Files) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"xds_servers": []any{map[string]any{"server_uri": cp, "channel_creds": []any{map[string]string{"type": "insecure"}}, "server_features": []string{"xds_v3"}}},
		"node":        map[string]string{"id": node},
		"certificate_providers": map[string]any{"mesh": map[string]any{"plugin_name": "file_watcher", "config": map[string]string{
			"certificate_file": f.Cert, "private_key_file": f.Key, "ca_certificate_file": f.CA, "refresh_interval": "600s"}}},
		"server_listener_resource_name_template": "grpc/server?xds.resource.listening_address=%s",
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// grpcLoadAssignment is an endpoint in a named, weighted locality, which
// grpc-go requires (it NACKs a locality without them).
func grpcLoadAssignment(cluster, addr string) *endpointv3.ClusterLoadAssignment {
	cla := xds.LoadAssignment(cluster, addr)
	cla.Endpoints[0].Locality = &corev3.Locality{Region: "meshbench", Zone: "local"}
	cla.Endpoints[0].LoadBalancingWeight = wrapperspb.UInt32(1)
	return cla
}

func providerTLS(peer string) *tlsv3.CommonTlsContext {
	vc := &tlsv3.CertificateValidationContext{CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: "mesh"}}
	if peer != "" {
		vc.MatchSubjectAltNames = []*matcherv3.StringMatcher{{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: peer}}}
	}
	return &tlsv3.CommonTlsContext{
		TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: "mesh"},
		ValidationContextType:          &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc},
	}
}

// TestGRPCProxylessOverXDS: grpc-go's own xDS client and server (an xDS
// implementation nobody here wrote), configured only by bootstraps naming
// the control plane, reach each other over the mutual TLS the control
// plane describes, and the server enforces the control plane's RBAC: a
// client with an identity the policy does not name gets PERMISSION_DENIED.
func TestGRPCProxylessOverXDS(t *testing.T) {
	cp, cpAddr := startServer(t)
	dir := t.TempDir()
	ca, err := identity.NewCA("meshbench.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	files := map[string]identity.Files{}
	for _, name := range []string{"echo", "client", "intruder"} {
		ids[name] = identity.SPIFFEID("meshbench.local", "default", name)
		files[name] = identity.FilesIn(dir, name)
		if err := ca.IssueFiles(files[name], ids[name], time.Hour); err != nil {
			t.Fatal(err)
		}
	}

	// The server: grpc-go's xDS server, serving the interop test service.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Fallback credentials apply only where the control plane describes
	// no security; it always does here (mutual TLS).
	creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := grpcxds.NewGRPCServer(grpc.Creds(creds), grpcxds.BootstrapContentsForTesting(grpcBootstrap(t, cpAddr, "echo-grpc", files["echo"])))
	if err != nil {
		t.Fatal(err)
	}
	testgrpc.RegisterTestServiceServer(srv, interop.NewTestServer())
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	router := mustAny(t, &routerv3.Router{})
	rbac := mustAny(t, &rbacv3.RBAC{Rules: &rbacconfigv3.RBAC{Action: rbacconfigv3.RBAC_ALLOW, Policies: map[string]*rbacconfigv3.Policy{
		"client": {
			Principals: []*rbacconfigv3.Principal{{Identifier: &rbacconfigv3.Principal_Authenticated_{Authenticated: &rbacconfigv3.Principal_Authenticated{
				PrincipalName: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: ids["client"]}}}}}},
			Permissions: []*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_Any{Any: true}}},
		},
	}}})
	serverListener := &listenerv3.Listener{
		Name:    "grpc/server?xds.resource.listening_address=" + lis.Addr().String(),
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(lis.Addr().(*net.TCPAddr).Port)}}}},
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{Name: xds.HTTPConnectionManager, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, &hcmv3.HttpConnectionManager{
				StatPrefix: "inbound",
				RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: "inbound", VirtualHosts: []*routev3.VirtualHost{{
					Name: "inbound", Domains: []string{"*"},
					Routes: []*routev3.Route{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
						Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}}}},
				}}}},
				HttpFilters: []*hcmv3.HttpFilter{
					{Name: xds.RBACFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: rbac}},
					{Name: xds.RouterFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}},
				},
			})}}},
			TransportSocket: &corev3.TransportSocket{Name: xds.TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t,
				&tlsv3.DownstreamTlsContext{CommonTlsContext: providerTLS(""), RequireClientCertificate: wrapperspb.Bool(true)})}},
		}},
	}
	// The client side: an API listener for the target xds:///echo:8080,
	// its cluster (mutual TLS accepting only the echo service) and the
	// cluster's endpoint.
	clientBundle := &xds.Bundle{
		Listeners: []*listenerv3.Listener{{Name: "echo:8080", ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(t, &hcmv3.HttpConnectionManager{
			StatPrefix: "outbound",
			RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: "echo", VirtualHosts: []*routev3.VirtualHost{{
				Name: "echo", Domains: []string{"echo:8080"},
				Routes: []*routev3.Route{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "echo"}}}}},
			}}}},
			HttpFilters: []*hcmv3.HttpFilter{{Name: xds.RouterFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}}},
		})}}},
		Clusters: []*clusterv3.Cluster{{
			Name: "echo", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}},
			TransportSocket: &corev3.TransportSocket{Name: xds.TLSTransportSocket, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t,
				&tlsv3.UpstreamTlsContext{CommonTlsContext: providerTLS(ids["echo"])})}},
		}},
		Endpoints: []*endpointv3.ClusterLoadAssignment{grpcLoadAssignment("echo", lis.Addr().String())},
	}
	bundles := map[string]*xds.Bundle{"echo-grpc": {Listeners: []*listenerv3.Listener{serverListener}}, "client-grpc": clientBundle, "intruder-grpc": clientBundle}
	if _, err := cp.Set(context.Background(), bundles); err != nil {
		t.Fatal(err)
	}

	call := func(name string) error {
		t.Helper()
		res, err := grpcxds.NewXDSResolverWithConfigForTesting(grpcBootstrap(t, cpAddr, name+"-grpc", files[name]))
		if err != nil {
			t.Fatal(err)
		}
		ccreds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient("xds:///echo:8080", grpc.WithTransportCredentials(ccreds), grpc.WithResolvers(res))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err = testgrpc.NewTestServiceClient(conn).UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 10}, grpc.WaitForReady(true))
		return err
	}
	if err := call("client"); err != nil {
		t.Fatalf("a client the policy allows: %v", err)
	}
	if err := call("intruder"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a client the policy does not name: %v, want PERMISSION_DENIED", err)
	}
	st := cp.Status()
	for _, node := range []string{"echo-grpc", "client-grpc"} {
		n := st[node]
		if n.Client == "" || n.Acked["envoy.config.listener.v3.Listener"] != "1" || len(n.NACKs) > 0 {
			t.Errorf("node %s: %+v, want grpc-go to have ACKed version 1", node, n)
		}
	}
	t.Logf("grpc-go clients: %s, %s", st["echo-grpc"].Client, st["client-grpc"].Client)
}
