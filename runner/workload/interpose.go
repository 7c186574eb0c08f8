package workload

import (
	"context"
	"fmt"
	"net"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// InterposeProxy is one listener of an interposer and the address its
// connections are forwarded to.
type InterposeProxy struct {
	Name, Listen, Upstream string
}

// InterposeOptions are an interposer's: toxiproxy's HTTP API, through
// which faults are added and removed, and its proxies.
type InterposeOptions struct {
	API     string
	Proxies []InterposeProxy
}

// Interpose runs toxiproxy's proxies and API until ctx ends: a
// user-space stand-in for netem on a path the platform redirects through
// it. Its proxies pass everything through until a toxic is added (by
// the API); a toxic acts on the connections already open too.
func Interpose(ctx context.Context, o InterposeOptions) error {
	host, port, err := net.SplitHostPort(o.API)
	if err != nil {
		return fmt.Errorf("api address %q: %w", o.API, err)
	}
	// The API server's own listener cannot be handed in: check the
	// address is free first, so that a clash is this error, not its
	// fatal log.
	l, err := net.Listen("tcp", o.API)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	l.Close()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	for _, px := range o.Proxies {
		if err := srv.Collection.Add(toxiproxy.NewProxy(srv, px.Name, px.Listen, px.Upstream), true); err != nil {
			return fmt.Errorf("proxy %s (%s -> %s): %w", px.Name, px.Listen, px.Upstream, err)
		}
	}
	go srv.Listen(host, port)
	<-ctx.Done()
	return nil
}
