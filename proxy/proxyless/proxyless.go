// Package proxyless is the mesh as a library: a workload links it instead
// of running a sidecar. It reads the same xDS resources the proxy reads and
// applies them in-process: the client side routes each request by its
// authority, picks an endpoint, applies the route timeout and talks mutual
// TLS to the peer workload directly; the server side accepts only mutual
// TLS from the identities its listener allows.
//
// It shares the proxy's compiled configuration and connection pools, so a
// feature added to the proxy's routing is a feature of proxyless clients.
package proxyless

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/meshbench/meshbench/proxy"
	"github.com/meshbench/meshbench/proxy/xds"
)

// Transport is an http.RoundTripper that routes requests as the bundle's
// outbound listener says.
type Transport struct {
	router *proxy.Router
}

var _ http.RoundTripper = (*Transport)(nil)

// NewTransport builds the client side from a bundle: its outbound listener
// (whose address is not used: nothing listens) and its clusters.
func NewTransport(b *xds.Bundle) (*Transport, error) {
	cfg, err := xds.Translate(b, "proxyless", "")
	if err != nil {
		return nil, err
	}
	var out *proxy.Listener
	for i := range cfg.Listeners {
		if cfg.Listeners[i].Direction == proxy.Outbound {
			out = &cfg.Listeners[i]
		}
	}
	if out == nil {
		return nil, errors.New("proxyless: the bundle has no outbound listener")
	}
	r, err := proxy.NewRouter(*cfg, out.Name)
	if err != nil {
		return nil, err
	}
	return &Transport{router: r}, nil
}

// RoundTrip routes the request by its Host to a cluster endpoint and sends
// it there (over mutual TLS when the cluster says so).
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.router.RoundTrip(req)
}

// CloseIdleConnections closes pooled connections.
func (t *Transport) CloseIdleConnections() { t.router.CloseIdleConnections() }

// Listen opens the bundle's inbound listener: mutual TLS accepting the
// identities the listener allows. Serve HTTP on it as usual.
func Listen(ctx context.Context, b *xds.Bundle) (net.Listener, error) {
	cfg, err := xds.Translate(b, "proxyless", "")
	if err != nil {
		return nil, err
	}
	for _, l := range cfg.Listeners {
		if l.Direction != proxy.Inbound {
			continue
		}
		if l.RBAC != nil {
			return nil, fmt.Errorf("proxyless listener %q: RBAC is not enforced by the proxyless server yet; remove it or use a proxy mode", l.Name)
		}
		tc, err := proxy.ServerTLS(l)
		if err != nil {
			return nil, err
		}
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", l.Address)
		if err != nil {
			return nil, fmt.Errorf("proxyless listener %q: %w", l.Name, err)
		}
		if tc == nil {
			return ln, nil
		}
		return tls.NewListener(ln, tc), nil
	}
	return nil, errors.New("proxyless: the bundle has no inbound listener")
}
