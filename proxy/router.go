package proxy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/meshbench/meshbench/proxy/identity"
)

// Library is the proxy's configuration applied in-process, with no
// server: the proxyless mode's data plane. Its outbound listener routes
// requests as an http.RoundTripper (Router) and its inbound listener's
// RBAC judges the requests the workload serves (Allow); Update replaces
// the configuration as a running proxy's does, so a control plane steers
// proxyless workloads too. It shares matching, header rewriting, load
// balancing, timeouts, connection pools and policy with the proxy.
type Library struct {
	p *Proxy
}

// NewLibrary compiles cfg.
func NewLibrary(cfg Config, opts ...Option) (*Library, error) {
	p, err := New(cfg, opts...)
	if err != nil {
		return nil, err
	}
	return &Library{p: p}, nil
}

// Update replaces the configuration (see Proxy.Update; nothing binds).
func (lib *Library) Update(cfg Config, version string, source json.RawMessage) error {
	return lib.p.Update(cfg, version, source)
}

// Version returns the version of the configuration in force.
func (lib *Library) Version() string { return lib.p.Version() }

// Config returns the configuration in force.
func (lib *Library) Config() Config { return lib.p.state.Load().cfg }

// Router returns a RoundTripper for the listener called name, which
// follows the library's updates.
func (lib *Library) Router(name string) *Router { return &Router{lib: lib, name: name} }

// Allow applies the RBAC of the inbound listener called name to a request
// the workload received (on that listener's mutual TLS): false is a 403.
func (lib *Library) Allow(name string, r *http.Request) bool {
	l := lib.p.state.Load().listeners[name]
	if l == nil || l.rbac == nil {
		return l != nil
	}
	return l.rbac.allows(l.source(r), r.Method, r.Host, r.URL.Path)
}

// CloseIdleConnections closes every cluster's idle connections.
func (lib *Library) CloseIdleConnections() {
	for _, c := range lib.p.state.Load().clusters {
		c.closeIdle()
	}
}

// Router routes requests as one listener of a Library says, as an
// http.RoundTripper.
type Router struct {
	lib  *Library
	name string
}

// NewRouter compiles cfg and returns a Router for its listener named
// listenerName.
func NewRouter(cfg Config, listenerName string) (*Router, error) {
	lib, err := NewLibrary(cfg)
	if err != nil {
		return nil, err
	}
	if lib.p.state.Load().listeners[listenerName] == nil {
		return nil, fmt.Errorf("no listener %q", listenerName)
	}
	return lib.Router(listenerName), nil
}

// RoundTrip routes req by its authority and path and sends it to an
// endpoint of the route's cluster. It does not modify req.
func (r *Router) RoundTrip(req *http.Request) (*http.Response, error) {
	l := r.lib.p.state.Load().listeners[r.name]
	if l == nil {
		return nil, fmt.Errorf("no listener %q in the configuration in force", r.name)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	vh, route := l.match(host, req.URL.Path, req.Method, req.Header, req.URL.RawQuery)
	if route == nil {
		return nil, fmt.Errorf("no route for %s%s", host, req.URL.Path)
	}
	if route.Redirect != nil {
		return nil, fmt.Errorf("route %q of %s%s redirects, which the proxyless library does not follow", route.Name, host, req.URL.Path)
	}
	c, hostRewrite := l.routes[route].pick()
	timeout := l.timeout
	if route.Timeout > 0 {
		timeout = route.Timeout.D()
	}
	if !c.admit() {
		return nil, errOverflow
	}
	ctx, cancel := context.WithTimeout(req.Context(), timeout)
	in := req.Clone(ctx)
	in.Host = host
	rewriteHeaders(in.Header, vh)
	routeHeaders(in.Header, route)
	rewrite(in, route, hostRewrite)
	ensureTraceparent(in.Header)
	var body *downstreamBody
	if in.Body != nil && in.Body != http.NoBody {
		body = &downstreamBody{rc: in.Body}
		if in.ContentLength == 0 {
			in.ContentLength = -1 // a client request's "unknown"
		}
	}
	resp, done, err := c.forward(ctx, in, body, route.Retry, 0)
	if err != nil {
		c.release()
		cancel()
		return nil, err
	}
	responseHeaders(resp.Header, route)
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: func() { done(); c.release(); cancel() }}
	return resp, nil
}

var errOverflow = errors.New("upstream overflow (circuit breaker)")

// CloseIdleConnections closes every cluster's idle connections.
func (r *Router) CloseIdleConnections() { r.lib.CloseIdleConnections() }

// cancelOnClose ends the request's timeout context with its body.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// ServerTLS returns the server-side mutual-TLS configuration of a listener,
// or nil when the listener is cleartext.
func ServerTLS(l Listener) (*tls.Config, error) {
	if l.TLS == nil {
		return nil, nil
	}
	src, err := l.TLS.source()
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", l.Name, err)
	}
	return src.ServerConfig(identity.AllowIDs(l.TLS.AllowedIDs...), alpn(l.Codec)...), nil
}
