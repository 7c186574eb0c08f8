package workload

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	xdscreds "google.golang.org/grpc/credentials/xds"
	grpcxds "google.golang.org/grpc/xds" // also registers the xds:/// resolver
)

// The proxyless-grpc mode's workload is grpc-go's own xDS client and
// server. grpc-go reads its bootstrap from the file GRPC_XDS_BOOTSTRAP
// names (the process role sets it), and everything else from the control
// plane: listeners, routes, clusters, endpoints, mutual TLS and RBAC.
// Fallback credentials apply only where the control plane describes no
// security; meshbench's always describes mutual TLS, and a listener or
// cluster that did not would fail its handshakes (refuseCreds) rather than
// fall back to plaintext in a run that reports mutual TLS.

// XDSDial opens a channel to xds:///target.
func XDSDial(target string) (*grpc.ClientConn, error) {
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: refuseCreds{}})
	if err != nil {
		return nil, err
	}
	return grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(creds))
}

// XDSServer returns a constructor of grpc-go's xDS server that sets
// serving while the server serves its listener (grpc-go accepts
// connections before it has its configuration, and closes them).
func XDSServer(serving *atomic.Bool) func() (GRPCServer, error) {
	return func() (GRPCServer, error) {
		creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: refuseCreds{}})
		if err != nil {
			return nil, err
		}
		return grpcxds.NewGRPCServer(grpc.Creds(creds), grpcxds.ServingModeCallback(func(_ net.Addr, args grpcxds.ServingModeChangeArgs) {
			serving.Store(args.Mode == connectivity.ServingModeServing)
		}))
	}
}

// ServeReady answers GET /ready on addr with 200 while serving is set and
// 503 otherwise, until ctx ends.
func ServeReady(ctx context.Context, addr string, serving *atomic.Bool) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" || !serving.Load() {
			http.Error(w, "not serving", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// refuseCreds are transport credentials that fail every handshake: the
// xDS credentials' fallback, used only where the control plane describes
// no security.
type refuseCreds struct{}

var errNoSecurity = errors.New("the control plane describes no security for this connection; refusing plaintext")

func (refuseCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errNoSecurity
}

func (refuseCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errNoSecurity
}

func (refuseCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "refuse"}
}

func (refuseCreds) Clone() credentials.TransportCredentials { return refuseCreds{} }

func (refuseCreds) OverrideServerName(string) error { return nil }
