// Package proxyless is the mesh as a library: a workload links it instead
// of running a sidecar. It reads the same xDS resources the proxy reads,
// from a file or from the control plane (following every change), and
// applies them in-process: the client side routes each request by its
// authority, picks an endpoint, applies the route's policy and talks
// mutual TLS to the peer workload directly; the server side accepts only
// mutual TLS from the identities its listener allows and applies the
// listener's RBAC.
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
	"time"

	"github.com/meshbench/meshbench/proxy"
	"github.com/meshbench/meshbench/proxy/xds"
)

// DefaultStartTimeout bounds how long Start waits for the first
// configuration.
const DefaultStartTimeout = 30 * time.Second

// Mesh is a workload's mesh library: the configuration in force, which
// its Source replaces on every change.
type Mesh struct {
	lib  *proxy.Library
	node string
}

// Start runs src for node until ctx ends and returns once the first
// configuration is in force (or src failed, or the timeout passed).
func Start(ctx context.Context, src xds.Source, node string, timeout time.Duration) (*Mesh, error) {
	lib, err := proxy.NewLibrary(proxy.Config{Node: node}, proxy.AwaitConfig())
	if err != nil {
		return nil, err
	}
	m := &Mesh{lib: lib, node: node}
	// The source follows ctx once configured; it stops if Start fails.
	ctx, cancel := context.WithCancel(ctx)
	configured := false
	defer func() {
		if !configured {
			cancel()
		}
	}()
	first := make(chan struct{})
	applied := false
	apply := xds.Apply(lib, node)
	errc := make(chan error, 1)
	go func() {
		errc <- src.Run(ctx, func(b *xds.Bundle) error {
			if err := apply(b); err != nil {
				return err
			}
			if !applied {
				applied = true
				close(first)
			}
			return nil
		})
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-first:
		configured = true
		return m, nil
	case err := <-errc:
		if err == nil {
			err = errors.New("configuration source ended")
		}
		return nil, err
	case <-t.C:
		return nil, fmt.Errorf("no configuration for %s within %s", node, timeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// listener returns the name of the configuration's listener of direction
// d.
func (m *Mesh) listener(d proxy.Direction) (proxy.Listener, error) {
	for _, l := range m.lib.Config().Listeners {
		if l.Direction == d {
			return l, nil
		}
	}
	return proxy.Listener{}, fmt.Errorf("proxyless: the configuration has no %s listener", d)
}

// Transport routes the workload's requests as the outbound listener in
// force says.
func (m *Mesh) Transport() (http.RoundTripper, error) {
	l, err := m.listener(proxy.Outbound)
	if err != nil {
		return nil, err
	}
	return m.lib.Router(l.Name), nil
}

// Listen opens the inbound listener: mutual TLS accepting the identities
// it allows. Serve Guard(handler) on it.
func (m *Mesh) Listen(ctx context.Context) (net.Listener, error) {
	l, err := m.listener(proxy.Inbound)
	if err != nil {
		return nil, err
	}
	if len(l.SourceRanges) > 0 {
		return nil, fmt.Errorf("proxyless listener %q: source ranges are a proxy's (the library does not filter its sources)", l.Name)
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

// Guard applies the inbound listener's RBAC in force to each request
// before h: a request no policy allows gets 403, as from a proxy.
func (m *Mesh) Guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l, err := m.listener(proxy.Inbound)
		if err != nil || !m.lib.Allow(l.Name, r) {
			w.Header().Set("X-Meshbench-Proxy-Error", "RBAC: access denied")
			http.Error(w, "RBAC: access denied", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Version returns the version of the configuration in force.
func (m *Mesh) Version() string { return m.lib.Version() }
