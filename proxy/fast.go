package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/meshbench/meshbench/proxy/identity"
)

// The fasthttp engine: HTTP/1.1 listeners served with
// github.com/valyala/fasthttp, upstream requests sent with its HostClient,
// one per endpoint. net/http's server and transport allocate about 60
// times per proxied request whatever the proxy does (BenchmarkLibraryFloor);
// fasthttp reuses its requests, responses and buffers, so the request is
// parsed once, edited in place and written upstream as it is, and the
// answer is read straight into the downstream response.
//
// It is chosen for the whole proxy (WithHTTP1Engine) and serves the
// listeners whose configuration it implements (fastUnsupported says why
// not); the others keep net/http. What it does not do: HTTP/2 (its
// listeners offer only http/1.1 in ALPN and do not read h2c), streaming
// (request and response bodies are read whole before they are sent on, so
// requests are bounded by MaxRequestBytes, or fastDefaultMaxBody), CONNECT,
// and a route's faults, redirects, rewrites, header changes and header
// matchers.

// HTTP/1.1 engines (WithHTTP1Engine).
const (
	EngineNetHTTP  = "net/http"
	EngineFastHTTP = "fasthttp"
)

// fastDefaultMaxBody bounds a request body on the fasthttp engine when the
// listener sets no MaxRequestBytes: bodies are held whole in memory.
const fastDefaultMaxBody = 4 << 20

// fastResponseHeaderBytes bounds an upstream response's head on the
// fasthttp engine (the size of each upstream connection's read buffer),
// as MaxHeaderBytes' default bounds a request's.
const fastResponseHeaderBytes = DefaultMaxHeaderBytes

// defaultFastHTTP is the engine of proxies no option chooses one for:
// net/http. The package's tests run once more with fasthttp
// (engine_test.go).
var defaultFastHTTP = false

// WithHTTP1Engine serves HTTP/1.1 listeners with the named engine:
// EngineNetHTTP (the default) or EngineFastHTTP.
func WithHTTP1Engine(name string) Option {
	return func(p *Proxy) { p.fastHTTP = name == EngineFastHTTP }
}

// ValidEngine checks an HTTP/1.1 engine's name.
func ValidEngine(name string) error {
	if name != EngineNetHTTP && name != EngineFastHTTP {
		return fmt.Errorf("unknown HTTP/1.1 engine %q (want %s or %s)", name, EngineNetHTTP, EngineFastHTTP)
	}
	return nil
}

// fastUnsupported says why the fasthttp engine cannot serve l ("" if it
// can).
func fastUnsupported(l *listener) string {
	c := &l.cfg
	switch {
	case c.TCPCluster != "":
		return "a TCP listener"
	case c.Internal:
		return "an internal listener"
	case c.Codec == CodecHTTP2:
		return "its codec is HTTP/2"
	case l.connect:
		return "it ends CONNECT streams"
	}
	for i := range c.VirtualHosts {
		vh := &c.VirtualHosts[i]
		if len(vh.RequestHeadersToAdd) > 0 || len(vh.RequestHeadersToRemove) > 0 {
			return "virtual host " + vh.Name + " changes request headers"
		}
		for j := range vh.Routes {
			r := &vh.Routes[j]
			switch {
			case r.Fault != nil:
				return "a route injects faults"
			case r.Redirect != nil:
				return "a route redirects"
			case r.PathRewrite != "" || r.PrefixRewrite != "" || r.HostRewrite != "":
				return "a route rewrites"
			case len(r.Headers) > 0:
				return "a route matches headers"
			case len(r.RequestHeadersToAdd) > 0 || len(r.RequestHeadersToRemove) > 0 ||
				len(r.ResponseHeadersToAdd) > 0 || len(r.ResponseHeadersToRemove) > 0:
				return "a route changes headers"
			}
			cr := l.routes[r]
			targets := cr.weighted
			if cr.cluster != nil {
				targets = []weightedTarget{{c: cr.cluster}}
			}
			for _, t := range targets {
				switch {
				case t.hostRewrite != "":
					return "a route rewrites"
				case t.c.cfg.HTTP2:
					return "cluster " + t.c.cfg.Name + " speaks HTTP/2"
				case hasInternal(t.c.cfg.Endpoints):
					return "cluster " + t.c.cfg.Name + " has internal endpoints"
				case t.c.cfg.LBPolicy == LBLeastRequest:
					return "cluster " + t.c.cfg.Name + " balances by least request"
				}
			}
		}
	}
	return ""
}

// fastConn is a downstream connection of the fasthttp engine, with the
// peer's identity read once, at the handshake.
type fastConn struct {
	net.Conn
	peer string
	// pre are bytes read to tell HTTP/2 from HTTP/1.x, read again first.
	pre []byte
}

func (c *fastConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite lets net/http half-close before closing, as on a bare TCP
// connection.
func (c *fastConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func wrapFast(c net.Conn, tc *tls.Conn) net.Conn {
	fc := &fastConn{Conn: c}
	if tc != nil {
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			fc.peer = identity.PeerID(certs[0])
		}
	}
	return fc
}

// startFast serves b's socket with a fasthttp server for its HTTP/1.x
// connections and, beside it, net/http's server for its HTTP/2 ones (by
// ALPN on TLS; by the client preface on cleartext, unless the codec is
// HTTP/1 only).
func (p *Proxy) startFast(b *boundListener, l *listener, v net.Listener) {
	fast := &fasthttp.Server{
		Handler:        b.serveFast,
		ErrorHandler:   l.fastParseError,
		ReadBufferSize: l.cfg.MaxHeaderBytes, // fasthttp's bound on a request head
		// fasthttp reads a request's head, then its body, before the
		// handler: the head within the header timeout, the body within
		// the request timeout (HeaderReceived).
		ReadTimeout: l.cfg.HeaderTimeout.D(),
		// Both bounds are the compiled listener's in force: an update
		// swaps it without a new server (serverKey leaves them out).
		HeaderReceived: func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
			cur := b.cur.Load()
			return fasthttp.RequestConfig{ReadTimeout: cur.timeout, MaxRequestBodySize: cur.fastMaxBody()}
		},
		IdleTimeout:                  l.cfg.IdleTimeout.D(),
		MaxRequestBodySize:           l.fastMaxBody(),
		NoDefaultServerHeader:        true,
		NoDefaultDate:                true,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		CloseOnShutdown:              true,
		Logger:                       discardLogger{},
	}
	var conns sync.Map // open connections, closed when a drain runs out
	fast.ConnState = func(c net.Conn, st fasthttp.ConnState) {
		switch st {
		case fasthttp.StateNew:
			l.stats.connections.Add(1)
			conns.Store(c, struct{}{})
		case fasthttp.StateClosed, fasthttp.StateHijacked:
			conns.Delete(c)
		}
	}
	h2 := l.server(b)
	sl := newSplitListener(newFramingListener(v, l.tls, l.cfg.MaxHeaderBytes, l.cfg.HeaderTimeout.D(), wrapFast),
		l.cfg.Codec != CodecHTTP1 && l.tls == nil, l.cfg.HeaderTimeout.D())
	go sl.run(func(err error) { p.fail(fmt.Errorf("listener %q: %w", b.name, err)) })
	// The servers' Accept ends only as the split listener closes.
	go func() { _ = fast.Serve(sl.http1) }()
	go func() { _ = h2.Serve(sl.http2) }()
	b.stop = func(ctx context.Context) {
		sl.Close()
		var wg sync.WaitGroup
		wg.Go(func() {
			if h2.Shutdown(ctx) != nil {
				h2.Close()
			}
		})
		if fast.ShutdownWithContext(ctx) != nil {
			// The drain ran out: what is still open closes now, as
			// net/http's Close does (fasthttp would keep serving it).
			conns.Range(func(c, _ any) bool {
				c.(net.Conn).Close()
				return true
			})
		}
		wg.Wait()
	}
}

// splitListener hands a fasthttp engine listener's connections to its
// two servers: HTTP/2 ones (a *tls.Conn that negotiated h2, or, with
// sniff, a cleartext one that begins with the HTTP/2 preface) to http2,
// the others to http1.
type splitListener struct {
	ln           net.Listener
	sniff        bool
	sniffTimeout time.Duration
	http1, http2 *chanListener
}

func newSplitListener(ln net.Listener, sniff bool, sniffTimeout time.Duration) *splitListener {
	return &splitListener{ln: ln, sniff: sniff, sniffTimeout: sniffTimeout,
		http1: newChanListener(ln.Addr()), http2: newChanListener(ln.Addr())}
}

// run hands the accepted connections on until the listener below fails
// (failed gets the error unless it was closed), then closes both.
func (s *splitListener) run(failed func(error)) {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				failed(err)
			}
			s.http1.Close()
			s.http2.Close()
			return
		}
		switch fc, _ := c.(*fastConn); {
		case fc == nil: // a *tls.Conn: h2 by ALPN
			s.http2.put(c)
		case s.sniff:
			go s.sniffPreface(fc)
		default:
			s.http1.put(c)
		}
	}
}

// sniffPreface reads as much of a cleartext connection's first bytes as
// tells HTTP/2's preface from an HTTP/1.x request line, and hands the
// connection on with them still to be read.
func (s *splitListener) sniffPreface(fc *fastConn) {
	buf := make([]byte, len(h2Preface))
	n := 0
	_ = fc.SetReadDeadline(time.Now().Add(s.sniffTimeout))
	for n < len(buf) && strings.HasPrefix(h2Preface, string(buf[:n])) {
		m, err := fc.Conn.Read(buf[n:])
		n += m
		if err != nil {
			fc.Close()
			return
		}
	}
	_ = fc.SetReadDeadline(time.Time{})
	fc.pre = buf[:n]
	if string(buf[:n]) == h2Preface {
		s.http2.put(fc)
		return
	}
	s.http1.put(fc)
}

func (s *splitListener) Close() error {
	s.http1.Close()
	s.http2.Close()
	return s.ln.Close()
}

// chanListener is a net.Listener of the connections put to it.
type chanListener struct {
	queue
	addr net.Addr
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{queue: newQueue(), addr: addr}
}

// put hands c to Accept, or closes it once the listener is closed.
func (l *chanListener) put(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	}
}

func (l *chanListener) Close() error   { l.shut(); return nil }
func (l *chanListener) Addr() net.Addr { return l.addr }

// fastMaxBody bounds a request body on the fasthttp engine, which holds
// it whole.
func (l *listener) fastMaxBody() int {
	if l.cfg.MaxRequestBytes > 0 {
		return int(l.cfg.MaxRequestBytes)
	}
	return fastDefaultMaxBody
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}

// fastParseError answers a request fasthttp could not read, as its own
// handler would (400, 413 for a body over the bound, 408 for a timeout),
// counted and marked as the proxy's answers are.
func (l *listener) fastParseError(ctx *fasthttp.RequestCtx, err error) {
	code, msg := fasthttp.StatusBadRequest, "malformed request"
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		code, msg = fasthttp.StatusRequestEntityTooLarge, "request body too large"
	case errors.As(err, &small):
		code, msg = fasthttp.StatusRequestHeaderFieldsTooLarge, "request head too large"
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		// Also a connection that sent nothing, which net/http closes
		// without a word: not counted as an answer.
		ctx.Response.Reset()
		ctx.SetStatusCode(fasthttp.StatusRequestTimeout)
		return
	}
	l.failFast(ctx, code, msg) // the server closes the connection after it
}

func (b *boundListener) serveFast(ctx *fasthttp.RequestCtx) { b.cur.Load().serveFast(ctx) }

// serveFast proxies one request: the same steps, in the same order and
// with the same answers, as ServeHTTP's, on fasthttp's request in place.
// Strings taken from the request without a copy (unsafeString) live only
// while it does: the handler's end.
func (l *listener) serveFast(ctx *fasthttp.RequestCtx) {
	ex := exchange{start: time.Now()}
	l.stats.requests.Add(1)
	l.stats.inFlight.Add(1)
	var closeAfter bool
	ex.code = l.exchangeFast(ctx, &ex, &closeAfter)
	if closeAfter {
		// Set last: the answer's own reset (an error's, an upstream
		// response read into it) would clear it.
		ctx.SetConnectionClose()
	}
	l.stats.inFlight.Add(-1)
	l.observe(&ex)
}

// exchangeFast proxies the request and returns the answer's status;
// closeAfter is set when the downstream connection must close after it.
func (l *listener) exchangeFast(ctx *fasthttp.RequestCtx, ex *exchange, closeAfter *bool) int {
	req := &ctx.Request
	h := &req.Header
	method, host := unsafeString(h.Method()), unsafeString(h.Host())
	ex.method, ex.authority = method, host
	cl, coding := framingFields(h.RawHeaders())
	te := coding != nil
	switch {
	case !bytes.Equal(h.Protocol(), []byte("HTTP/1.1")) && !bytes.Equal(h.Protocol(), []byte("HTTP/1.0")):
		// fasthttp reads any other version as HTTP/1.0; net/http answers
		// 505, as RFC 9110 section 15.6.6 has it.
		*closeAfter = true
		return l.failFast(ctx, fasthttp.StatusHTTPVersionNotSupported, "unsupported HTTP version")
	case !h.IsHTTP11() && te:
		*closeAfter = true
		return l.failFast(ctx, fasthttp.StatusBadRequest, "Transfer-Encoding in an HTTP/1.0 request")
	case te && !bytes.EqualFold(coding, []byte("chunked")):
		// fasthttp takes "identity" as no coding (and no body): what
		// follows the head would be read as the next request.
		*closeAfter = true
		return l.failFast(ctx, fasthttp.StatusNotImplemented, "unsupported transfer coding")
	case te && !dropTrailers(h):
		*closeAfter = true
		return l.failFast(ctx, fasthttp.StatusBadRequest, "a trailer field repeats a header field")
	case te && cl:
		// Sent on with the body's length only, then the connection
		// closes, as RFC 9112 section 6.1 requires of a server.
		*closeAfter = true
	}
	target := unsafeString(h.RequestURI())
	if strings.IndexByte(target, '#') >= 0 {
		// A request target has no fragment (RFC 9112 section 3.2), and
		// fasthttp would send the target without it: what is matched
		// must be what is sent.
		return l.failFast(ctx, fasthttp.StatusBadRequest, "fragment in request target")
	}
	if target != "" && target[0] != '/' {
		// An absolute-form target (RFC 9112 section 3.2.2): sent on in
		// origin form, its authority the request's.
		u, err := url.ParseRequestURI(target)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			return l.failFast(ctx, fasthttp.StatusBadRequest, "unsupported scheme in request target")
		case u.User != nil:
			return l.failFast(ctx, fasthttp.StatusBadRequest, "user information in request target")
		}
		req.SetRequestURI(u.RequestURI()) // parsed again: what fasthttp sends
		h.SetHost(u.Host)
		host, target = unsafeString(h.Host()), unsafeString(h.RequestURI())
		ex.authority = host
	}
	raw, query, _ := strings.Cut(target, "?")
	path := raw
	if strings.IndexByte(raw, '%') >= 0 {
		var err error
		if path, err = url.PathUnescape(raw); err != nil {
			return l.failFast(ctx, fasthttp.StatusBadRequest, "path is not in normal form")
		}
	}
	if !normalPathOf(path, raw) {
		return l.failFast(ctx, fasthttp.StatusBadRequest, "path is not in normal form")
	}
	ex.path = path
	_, route := l.match(host, path, method, nil, query)
	if route == nil {
		l.stats.noRoute.Add(1)
		return l.failFast(ctx, fasthttp.StatusNotFound, "no route for "+host+path)
	}
	ex.source = l.fastSource(ctx)
	if trace := fastTraceparent(h); l.accessLog != nil {
		ex.trace = string(trace[:])
	}
	if l.rbac != nil && !l.rbac.allows(ex.source, method, host, path) {
		l.stats.denied.Add(1)
		return l.failFast(ctx, fasthttp.StatusForbidden, "RBAC: access denied")
	}
	c, _ := l.routes[route].pick()
	ex.cluster = c.cfg.Name
	if !c.admit() {
		return l.failFast(ctx, fasthttp.StatusServiceUnavailable, "upstream overflow (circuit breaker)")
	}
	defer c.release()
	l.fastRequestHeaders(ctx)
	timeout := l.timeout
	if route.Timeout > 0 {
		timeout = route.Timeout.D()
	}
	deadline := time.Now().Add(timeout)
	code, err := c.forwardFast(ctx, method, route.Retry, deadline)
	if st := ctx.Response.Header.Peek("Grpc-Status"); err == nil && len(st) > 0 {
		// A gRPC call's outcome (trailers-only, or trailers fasthttp read
		// into the header).
		ex.grpcStatus = string(st)
	}
	if err != nil {
		switch {
		case errors.Is(err, fasthttp.ErrTimeout) || !time.Now().Before(deadline):
			l.stats.timeouts.Add(1)
			return l.failFast(ctx, fasthttp.StatusGatewayTimeout, "upstream request timeout")
		case errors.Is(err, errNoEndpoints):
			l.stats.upstreamErrors.Add(1)
			return l.failFast(ctx, fasthttp.StatusServiceUnavailable, "no healthy upstream")
		default:
			l.stats.upstreamErrors.Add(1)
			return l.failFast(ctx, fasthttp.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers")
		}
	}
	l.stats.count(code)
	return code
}

// failFast answers with the proxy's own error, as fail does.
func (l *listener) failFast(ctx *fasthttp.RequestCtx, code int, msg string) int {
	l.stats.count(code)
	resp := &ctx.Response
	resp.Reset()
	resp.Header.Set("X-Meshbench-Proxy-Error", msg)
	resp.Header.Set("X-Content-Type-Options", "nosniff")
	resp.Header.SetContentType("text/plain; charset=utf-8")
	resp.SetStatusCode(code)
	resp.SetBodyString(msg + "\n")
	return code
}

// fastSource is source's answer for a fasthttp request.
func (l *listener) fastSource(ctx *fasthttp.RequestCtx) string {
	fc, _ := ctx.Conn().(*fastConn)
	if fc == nil || fc.peer == "" {
		return ""
	}
	if l.sourceHeader != "" {
		return string(ctx.Request.Header.Peek(l.sourceHeader))
	}
	return fc.peer
}

// fastTraceparent is ensureTraceparent on a fasthttp request: it
// returns the traceparent it set.
func fastTraceparent(h *fasthttp.RequestHeader) [55]byte {
	buf, fresh := nextTraceparent(unsafeString(h.Peek("Traceparent")))
	if fresh {
		h.Del("Tracestate")
	}
	h.Del("Traceparent") // every field of it: Set replaces the first only
	h.SetBytesV("Traceparent", buf[:])
	return buf
}

// fastRequestHeaders is prepareHeaders on a fasthttp request: hop-by-hop
// headers out (those its Connection header names too), then the
// X-Forwarded ones. "Connection: close" is the downstream's: fasthttp
// keeps it apart from the fields, and the server has taken note of it.
func (l *listener) fastRequestHeaders(ctx *fasthttp.RequestCtx) {
	h := &ctx.Request.Header
	teTrailers := false
	for _, v := range h.PeekAll("Te") {
		for part := range strings.SplitSeq(unsafeString(v), ",") {
			teTrailers = teTrailers || strings.EqualFold(strings.TrimSpace(part), "trailers")
		}
	}
	dropNamed(h.PeekAll("Connection"), h.Del)
	h.ResetConnectionClose()
	for _, name := range hopHeaders {
		if name != "Transfer-Encoding" { // fasthttp frames the body itself
			h.Del(name)
		}
	}
	if teTrailers {
		h.Set("Te", "trailers")
	}
	if l.cfg.ForwardedFor == ForwardedAppend {
		if ip, ok := netip.AddrFromSlice(ctx.RemoteIP()); ok {
			var buf [128]byte // on the stack; SetBytesV copies
			xff := buf[:0]
			for _, prior := range h.PeekAll("X-Forwarded-For") {
				xff = append(append(xff, prior...), ", "...)
			}
			h.Del("X-Forwarded-For") // every field of it: Set replaces the first only
			h.SetBytesV("X-Forwarded-For", ip.Unmap().AppendTo(xff))
		}
	}
	if len(h.Peek("X-Forwarded-Proto")) == 0 {
		h.Set("X-Forwarded-Proto", l.proto)
	}
	if len(h.Peek("X-Forwarded-Host")) == 0 && len(h.Host()) > 0 {
		h.SetBytesV("X-Forwarded-Host", h.Host())
	}
}

// dropNamed deletes the fields that Connection values name (del only
// moves fields: the values, which view the header's buffer, stay intact).
func dropNamed(connection [][]byte, del func(string)) {
	for _, v := range connection {
		for name := range strings.SplitSeq(unsafeString(v), ",") {
			if name = strings.TrimSpace(name); name != "" && !strings.EqualFold(name, "close") {
				del(name)
			}
		}
	}
}

// forwardFast sends the downstream request to the cluster, retrying as
// policy allows within the retry budget, with the answer read into the
// downstream response. It returns the answer's status.
func (c *cluster) forwardFast(ctx *fasthttp.RequestCtx, method string, policy *RetryPolicy, deadline time.Time) (int, error) {
	req, resp := &ctx.Request, &ctx.Response
	req.UseHostHeader = true
	req.Header.SetNoDefaultContentType(true) // the request's own, or none
	req.URI().SetScheme(c.scheme)
	if !req.Header.IsHTTP11() {
		// Upstream connections are HTTP/1.1 keep-alive, whatever the
		// downstream's version (the server noted it at the head).
		defer req.Header.SetProtocol("HTTP/1.0")
		req.Header.SetProtocol("HTTP/1.1")
	}
	retryable := policy != nil && policy.NumRetries > 0 && retryMethod(policy, method)
	var prev *endpoint
	holdsRetry := false // a retry-budget slot, held while its attempt runs
	defer func() {
		if holdsRetry {
			c.retryDone()
		}
	}()
	for attempt := 0; ; attempt++ {
		ep := c.pick(prev)
		if ep == nil {
			return 0, errNoEndpoints
		}
		try := deadline
		if policy != nil && policy.PerTryTimeout > 0 {
			if t := time.Now().Add(policy.PerTryTimeout.D()); t.Before(try) {
				try = t
			}
		}
		t0 := time.Now()
		ep.active.Add(1)
		err := c.fastClient(ep).DoDeadline(req, resp, try)
		ep.active.Add(-1)
		if holdsRetry {
			c.retryDone()
			holdsRetry = false
		}
		code := 0
		o := outcomeGatewayFailure
		if err == nil {
			code = resp.StatusCode()
			o = statusOutcome(code)
		}
		now := time.Now()
		c.record(ep, o, now)
		ep.observeOutcome(now.Sub(t0), o)
		last := !retryable || attempt >= policy.NumRetries || now.After(deadline)
		if last || !retryOn(policy, code, fastRetryErr(err)) || !c.allowRetry() {
			if err != nil {
				return 0, err
			}
			fastResponseHeaders(&resp.Header)
			// Reading the answer reset what the server had set: an answer
			// without Content-Type is sent on without one.
			resp.Header.SetNoDefaultContentType(true)
			return code, nil
		}
		resp.Reset()
		c.stats.retries.Add(1)
		holdsRetry = true
		prev = ep
	}
}

// fastRetryErr maps fasthttp's timeout to the one retryOn knows.
func fastRetryErr(err error) error {
	if errors.Is(err, fasthttp.ErrTimeout) {
		return context.DeadlineExceeded
	}
	return err
}

// fastResponseHeaders takes the hop-by-hop headers out of an upstream
// answer; "Connection: close" was the upstream connection's, not the
// downstream's. The answer goes on with its length, not chunked, so its
// trailers are dropped, and their announcement with them (RFC 9110
// section 6.5.1 lets a recipient removing the chunked coding discard
// them).
func fastResponseHeaders(h *fasthttp.ResponseHeader) {
	dropNamed(h.PeekAll("Connection"), h.Del)
	h.ResetConnectionClose()
	for _, name := range hopHeaders {
		if name != "Transfer-Encoding" { // fasthttp frames the body
			h.Del(name)
		}
	}
}

// fastClient is the endpoint's fasthttp connection pool, made on first
// use.
func (c *cluster) fastClient(ep *endpoint) *fasthttp.HostClient {
	if hc := ep.fast.Load(); hc != nil {
		return hc
	}
	timeout := c.cfg.ConnectTimeout.D()
	hc := &fasthttp.HostClient{
		Addr: ep.addr,
		Dial: func(addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			return c.dial(ctx, "tcp", addr)
		},
		IsTLS:                    c.httpTLS != nil,
		TLSConfig:                c.httpTLS,
		MaxConns:                 c.cfg.CircuitBreakers.MaxConnections,
		MaxIdleConnDuration:      c.cfg.IdleTimeout.D(),
		ReadBufferSize:           fastResponseHeaderBytes,
		NoDefaultUserAgentHeader: true,
		DisablePathNormalizing:   true,
		// With every connection busy, a request waits for one (as
		// net/http's MaxConnsPerHost does) until its deadline, which
		// bounds this.
		MaxConnWaitTimeout: time.Hour,
		RetryIfErr:         staleRetry,
	}
	if ep.fast.CompareAndSwap(nil, hc) {
		return hc
	}
	return ep.fast.Load()
}

// staleRetry lets fasthttp send an idempotent request once more, on
// another connection, when a pooled one turned out closed before any of
// the answer came (the upstream closed it while idle), as net/http's
// transport does. Every other failure is the route's retry policy's.
func staleRetry(req *fasthttp.Request, attempts int, err error) (resetTimeout, retry bool) {
	stale := errors.Is(err, io.EOF) || errors.Is(err, fasthttp.ErrConnectionClosed) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
	return false, stale && attempts == 1 && slices.Contains(idempotent, unsafeString(req.Header.Method()))
}

// dropTrailers takes out of a chunked request's fields those fasthttp
// read from its trailer section: the body goes on with its length, not
// chunked, and RFC 9110 section 6.5.1 lets a recipient that removes the
// chunked coding discard the trailers. A trailer field named like a head
// field cannot be told from it: false.
func dropTrailers(h *fasthttp.RequestHeader) bool {
	head := map[string]int{}
	raw := h.RawHeaders()
	for len(raw) > 0 {
		line, rest, _ := bytes.Cut(raw, []byte("\n"))
		raw = rest
		if name, _, ok := bytes.Cut(line, []byte(":")); ok {
			head[http.CanonicalHeaderKey(string(name))]++
		}
	}
	seen := map[string]int{}
	var extra []string
	for k := range h.All() {
		name := string(k)
		if seen[name]++; seen[name] > head[name] {
			switch name {
			case "Host", "Content-Length", "Transfer-Encoding", "Content-Type", "User-Agent", "Connection", "Cookie", "Trailer":
				// kept apart by fasthttp, never from a trailer section
				// (it refuses these there)
			default:
				if head[name] > 0 {
					return false
				}
				extra = append(extra, name)
			}
		}
	}
	for _, name := range extra {
		h.Del(name)
	}
	return true
}

// unsafeString views b as a string without copying: only for bytes that
// stay unchanged while the string is used.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
