package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/meshbench/meshbench/proxy/identity"
)

// Router applies one listener's routing in-process, as an
// http.RoundTripper: the proxyless mode's data plane. It shares matching,
// header rewriting, load balancing, timeouts and connection pools with the
// proxy; it has no downstream server.
type Router struct {
	l        *listener
	clusters map[string]*cluster
}

// NewRouter compiles cfg and returns a Router for its listener named
// listenerName.
func NewRouter(cfg Config, listenerName string) (*Router, error) {
	cfg.Normalize()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Router{clusters: map[string]*cluster{}}
	for _, c := range cfg.Clusters {
		cl, err := newCluster(c)
		if err != nil {
			return nil, err
		}
		r.clusters[c.Name] = cl
	}
	for _, lc := range cfg.Listeners {
		if lc.Name != listenerName {
			continue
		}
		l, err := newListener(lc, r.clusters, nil)
		if err != nil {
			return nil, err
		}
		r.l = l
	}
	if r.l == nil {
		return nil, fmt.Errorf("no listener %q", listenerName)
	}
	return r, nil
}

// RoundTrip routes req by its authority and path and sends it to an
// endpoint of the route's cluster. It does not modify req.
func (r *Router) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	vh, route := r.l.match(host, req.URL.Path, req.Method, req.Header, req.URL.RawQuery)
	if route == nil {
		return nil, fmt.Errorf("no route for %s%s", host, req.URL.Path)
	}
	if route.Redirect != nil {
		return nil, fmt.Errorf("route %q of %s%s redirects, which the proxyless library does not follow", route.Name, host, req.URL.Path)
	}
	c, hostRewrite := r.l.routes[route].pick()
	timeout := r.l.timeout
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
func (r *Router) CloseIdleConnections() {
	for _, c := range r.clusters {
		c.transport.CloseIdleConnections()
	}
}

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
