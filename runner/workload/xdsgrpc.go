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
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	grpcxds "google.golang.org/grpc/xds" // also registers the xds:/// resolver
)

// The proxyless-grpc mode's workload is grpc-go's own xDS client and
// server. grpc-go reads its bootstrap from the file GRPC_XDS_BOOTSTRAP
// names (the process role sets it), and everything else from the control
// plane: listeners, routes, clusters, endpoints, mutual TLS and RBAC.
// Fallback credentials apply only where the control plane describes no
// security; meshbench's always describes mutual TLS.

// XDSDial opens a channel to xds:///target.
func XDSDial(target string) (*grpc.ClientConn, error) {
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
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
		creds, err := xdscreds.NewServerCredentials(xdscreds.ServerOptions{FallbackCreds: insecure.NewCredentials()})
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
