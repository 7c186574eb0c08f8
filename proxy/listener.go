package proxy

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshbench/meshbench/proxy/identity"
)

type listener struct {
	cfg     Listener
	exact   map[string]*VirtualHost
	any     *VirtualHost
	routes  map[*Route]*compiledRoute
	stats   *listenerStats // the listener's, across configurations
	proto   string         // X-Forwarded-Proto value for requests on this listener
	timeout time.Duration
	tls     *tls.Config
	rbac    *rbac
	// sourceHeader is the header trusted to carry the source identity.
	sourceHeader string
	// connect says some route ends CONNECT streams (serveConnect).
	connect   bool
	metrics   *metrics
	accessLog func(*exchange)
	// fast says the fasthttp engine serves it (Proxy.fastHTTP, and
	// fastUnsupported found nothing it lacks).
	fast bool
}

type listenerStats struct {
	requests, r2xx, r3xx, r4xx, r5xx, noRoute, upstreamErrors, timeouts atomic.Uint64
	denied, faultDelays, faultAborts                                    atomic.Uint64
	connections, refused                                                atomic.Uint64
	inFlight                                                            atomic.Int64
}

func (s *listenerStats) snapshot() ListenerStats {
	return ListenerStats{
		Requests: s.requests.Load(), Responses2xx: s.r2xx.Load(), Responses3xx: s.r3xx.Load(),
		Responses4xx: s.r4xx.Load(), Responses5xx: s.r5xx.Load(), NoRoute: s.noRoute.Load(),
		UpstreamErrors: s.upstreamErrors.Load(), Timeouts: s.timeouts.Load(), InFlight: s.inFlight.Load(),
		Connections: s.connections.Load(), Refused: s.refused.Load(), Denied: s.denied.Load(),
		FaultDelays: s.faultDelays.Load(), FaultAborts: s.faultAborts.Load(),
	}
}

func (s *listenerStats) count(code int) {
	switch {
	case code >= 500:
		s.r5xx.Add(1)
	case code >= 400:
		s.r4xx.Add(1)
	case code >= 300:
		s.r3xx.Add(1)
	default:
		s.r2xx.Add(1)
	}
}

func newListener(cfg Listener, clusters map[string]*cluster, stats *listenerStats) (*listener, error) {
	if stats == nil {
		stats = &listenerStats{}
	}
	l := &listener{cfg: cfg, exact: map[string]*VirtualHost{}, routes: map[*Route]*compiledRoute{},
		proto: "http", timeout: cfg.RequestTimeout.D(), stats: stats}
	if cfg.TLS != nil {
		src, err := cfg.TLS.source()
		if err != nil {
			return nil, fmt.Errorf("listener %q: %w", cfg.Name, err)
		}
		l.tls = src.ServerConfig(identity.AllowIDs(cfg.TLS.AllowedIDs...), alpn(cfg.Codec)...)
		l.proto = "https"
	}
	if cfg.RBAC != nil {
		l.rbac = newRBAC(cfg.RBAC)
		for _, p := range cfg.RBAC.Policies {
			if p.SourceHeader != "" {
				l.sourceHeader = p.SourceHeader
			}
		}
	}
	for i := range l.cfg.VirtualHosts {
		vh := &l.cfg.VirtualHosts[i]
		for _, d := range vh.Domains {
			if d == "*" {
				if l.any == nil {
					l.any = vh
				}
				continue
			}
			d = strings.ToLower(d)
			if _, dup := l.exact[d]; !dup {
				l.exact[d] = vh
			}
		}
		for j := range vh.Routes {
			r := &vh.Routes[j]
			l.routes[r] = compileRoute(r, clusters)
			l.connect = l.connect || r.Connect
		}
	}
	return l, nil
}

// alpn lists the protocols a TLS listener offers.
func alpn(c Codec) []string {
	switch c {
	case CodecHTTP1:
		return []string{"http/1.1"}
	case CodecHTTP2:
		return []string{"h2"}
	}
	return []string{"h2", "http/1.1"}
}

// match finds the route for a request: the virtual host by exact authority
// (with and without port), then "*"; then the first route whose path,
// method, header and query matchers all match (query is the raw query,
// parsed only for routes that match on it).
func (l *listener) match(host, path, method string, h http.Header, query string) (*VirtualHost, *Route) {
	vh := l.exact[host]
	if vh == nil && strings.IndexByte(host, ':') >= 0 {
		if hp, _, err := net.SplitHostPort(host); err == nil {
			vh = l.exact[hp]
		}
	}
	if vh == nil {
		if lower := strings.ToLower(host); lower != host {
			return l.match(lower, path, method, h, query)
		}
		vh = l.any
	}
	if vh == nil {
		return nil, nil
	}
	var q url.Values
	for i := range vh.Routes {
		r := &vh.Routes[i]
		cr := l.routes[r]
		if r.Connect != (method == http.MethodConnect) {
			continue // CONNECT streams and requests never share a route
		}
		if !cr.matchPath(r, path) || (len(r.Methods) > 0 && !slices.Contains(r.Methods, method)) || !cr.matchHeaders(h) {
			continue
		}
		if len(cr.query) > 0 {
			if q == nil {
				q, _ = url.ParseQuery(query)
			}
			if !cr.matchQuery(q) {
				continue
			}
		}
		return vh, r
	}
	return vh, nil
}

// rewriteHeaders applies a virtual host's header removals and additions.
func rewriteHeaders(h http.Header, vh *VirtualHost) {
	changeHeaders(h, vh.RequestHeadersToRemove, vh.RequestHeadersToAdd)
}

// hopHeaders are the hop-by-hop headers of RFC 9110 section 7.6.1 (and the
// non-standard ones proxies traditionally drop too).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopHeaders deletes hop-by-hop headers, including those the
// Connection header names, but keeps "TE: trailers", which gRPC needs end to
// end.
func removeHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				delete(h, http.CanonicalHeaderKey(name))
			}
		}
	}
	teTrailers := false
	for _, v := range h["Te"] {
		for _, part := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), "trailers") {
				teTrailers = true
			}
		}
	}
	for _, name := range hopHeaders {
		delete(h, name)
	}
	if teTrailers {
		h["Te"] = []string{"trailers"}
	}
}

func announceTrailers(h http.Header, trailer http.Header) {
	if len(trailer) == 0 {
		return
	}
	names := make([]string, 0, len(trailer))
	for k := range trailer {
		names = append(names, k)
	}
	h["Trailer"] = []string{strings.Join(names, ", ")}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyBody streams the upstream body through a pooled buffer. Bodies of
// unknown length (streams: gRPC, server-sent events, chunked responses) are
// flushed as they arrive, so a proxy never holds back a stream's messages.
func copyBody(w http.ResponseWriter, body io.Reader, streaming bool) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var rc *http.ResponseController
	if streaming {
		rc = http.NewResponseController(w)
	}
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if streaming {
				_ = rc.Flush()
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
