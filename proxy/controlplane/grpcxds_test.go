package controlplane

import (
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	grpcxds "google.golang.org/grpc/xds"

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
		"certificate_providers": map[string]any{xds.GRPCCertificateProvider: map[string]any{"plugin_name": "file_watcher", "config": map[string]string{
			"certificate_file": f.Cert, "private_key_file": f.Key, "ca_certificate_file": f.CA, "refresh_interval": "600s"}}},
		"server_listener_resource_name_template": xds.GRPCServerListenerTemplate,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGRPCProxylessOverXDS: grpc-go's own xDS client and server (an xDS
// implementation nobody here wrote), configured only by bootstraps naming
// the control plane, reach each other over the mutual TLS the control
// plane describes, and the server enforces the control plane's RBAC: a
// client with an identity the policy does not name gets PERMISSION_DENIED.
func TestGRPCProxylessOverXDS(t *testing.T) {
	cp, cpAddr := startServer(t, WithGRPCNodes("echo-grpc", "client-grpc", "intruder-grpc"))
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

	serverListener, err := xds.GRPCServerListener(lis.Addr().String(), []string{ids["client"]})
	if err != nil {
		t.Fatal(err)
	}
	// The client side: an API listener for the target xds:///echo:8080,
	// its cluster (mutual TLS accepting only the echo service) and the
	// cluster's endpoint.
	clientBundle := &xds.Bundle{
		Listeners: []*listenerv3.Listener{xds.GRPCClientListener("echo:8080", "echo")},
		Clusters:  []*clusterv3.Cluster{xds.GRPCCluster("echo", ids["echo"])},
		Endpoints: []*endpointv3.ClusterLoadAssignment{xds.GRPCLoadAssignment("echo", lis.Addr().String())},
	}
	// The echo service also calls another (a middle service of a chain):
	// its node has a client listener besides its server's, and grpc-go
	// asks for them one watch at a time. (A cache in go-control-plane's
	// ADS mode never answers that first request: grpc-go's nodes are
	// served by one that is not.)
	echoBundle := &xds.Bundle{
		Listeners: []*listenerv3.Listener{serverListener, xds.GRPCClientListener("other:8080", "other")},
		Clusters:  []*clusterv3.Cluster{xds.GRPCCluster("other", ids["client"])},
		Endpoints: []*endpointv3.ClusterLoadAssignment{xds.GRPCLoadAssignment("other", "127.0.0.1:1")},
	}
	bundles := map[string]*xds.Bundle{"echo-grpc": echoBundle, "client-grpc": clientBundle, "intruder-grpc": clientBundle}
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
