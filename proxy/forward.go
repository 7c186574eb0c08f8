package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxRetryBody is the largest request body read into memory before it is
// sent (so that it goes out with the headers and can be retried); larger
// bodies are streamed once.
const maxRetryBody = 64 << 10

func (l *listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	l.stats.requests.Add(1)
	l.stats.inFlight.Add(1)
	defer l.stats.inFlight.Add(-1)
	ex := exchange{start: start, method: r.Method, path: r.URL.Path, authority: r.Host}
	defer func() { l.observe(&ex) }()

	if r.ProtoMajor == 1 {
		f, rc := checkFraming(r)
		defer rc.end()
		if f.close {
			closeAfter(w)
		}
		if f.reject != "" {
			ex.code = l.fail(w, http.StatusBadRequest, f.reject)
			return
		}
	}
	if r.Method == http.MethodConnect && l.connect {
		ex.code = l.serveConnect(w, r, &ex)
		return
	}
	if s := r.URL.Scheme; s != "" && s != "http" && s != "https" {
		// An absolute-form target names its scheme; only HTTP's are
		// proxied (RFC 9112 section 3.2.2).
		ex.code = l.fail(w, http.StatusBadRequest, "unsupported scheme in request target")
		return
	}
	if !normalPath(r.URL) {
		// Matching, RBAC and the upstream must all see the same path; a path
		// with dot segments, doubled or encoded slashes could mean one thing
		// here and another to the backend (Envoy's CVE-2019-9901 class).
		ex.code = l.fail(w, http.StatusBadRequest, "path is not in normal form")
		return
	}
	vh, route := l.match(r.Host, r.URL.Path, r.Method, r.Header, r.URL.RawQuery)
	if route == nil {
		l.stats.noRoute.Add(1)
		ex.code = l.fail(w, http.StatusNotFound, "no route for "+r.Host+r.URL.Path)
		return
	}
	ex.source = l.source(r)
	ex.trace = ensureTraceparent(r.Header)
	if l.rbac != nil && !l.rbac.allows(ex.source, r.Method, r.Host, r.URL.Path) {
		l.stats.denied.Add(1)
		ex.code = l.fail(w, http.StatusForbidden, "RBAC: access denied")
		return
	}
	if f := route.Fault; f != nil && faultApplies(f, r) {
		if code, aborted := l.injectFault(w, r, f); aborted {
			ex.code = code
			return
		}
	}
	if l.cfg.MaxRequestBytes > 0 && r.ContentLength > l.cfg.MaxRequestBytes {
		ex.code = l.fail(w, http.StatusRequestEntityTooLarge, "request body too large")
		return
	}
	if route.Redirect != nil {
		ex.code = redirect(w, r, route, l.proto)
		l.stats.count(ex.code)
		return
	}
	c, hostRewrite := l.routes[route].pick()
	ex.cluster = c.cfg.Name
	if !c.admit() {
		ex.code = l.fail(w, http.StatusServiceUnavailable, "upstream overflow (circuit breaker)")
		return
	}
	defer c.release()
	l.requestHeaders(r, vh)
	routeHeaders(r.Header, route)
	rewrite(r, route, hostRewrite)
	// r.Body stays net/http's own: it decides from the body's type and
	// state whether the connection may carry another request (a body not
	// read to its end, or that failed, closes it). The upstream request
	// reads it through body.
	var body *downstreamBody
	if r.ContentLength != 0 {
		body = &downstreamBody{rc: r.Body, http1: r.ProtoMajor == 1}
		if body.http1 {
			defer body.detach(w)
		}
	}

	timeout := l.timeout
	if route.Timeout > 0 {
		timeout = route.Timeout.D()
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	resp, done, err := c.forward(ctx, r, body, route.Retry, l.cfg.MaxRequestBytes)
	if body != nil && r.ProtoMajor == 1 && !body.eof.Load() {
		// The exchange ended (an early upstream response, an error, a
		// malformed or oversized body) before the body was read to its
		// end: what is left of it on the connection must never be parsed
		// as requests.
		closeAfter(w)
	}
	if err != nil {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			l.stats.timeouts.Add(1)
			ex.code = l.fail(w, http.StatusGatewayTimeout, "upstream request timeout")
		case errors.Is(err, errBodyTooLarge):
			ex.code = l.fail(w, http.StatusRequestEntityTooLarge, "request body too large")
		case errors.Is(err, errNoEndpoints):
			l.stats.upstreamErrors.Add(1)
			ex.code = l.fail(w, http.StatusServiceUnavailable, "no healthy upstream")
		case body != nil && body.failed.Load():
			ex.code = l.fail(w, http.StatusBadRequest, "malformed request body")
		case r.Context().Err() != nil:
			ex.code = 499 // the downstream went away; nobody to answer
		default:
			l.stats.upstreamErrors.Add(1)
			ex.code = l.fail(w, http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers")
		}
		return
	}
	defer done()
	defer resp.Body.Close()
	removeHopHeaders(resp.Header)
	dst := w.Header()
	for k, vv := range resp.Header {
		dst[k] = vv
	}
	announceTrailers(dst, resp.Trailer)
	responseHeaders(dst, route)
	w.WriteHeader(resp.StatusCode)
	l.stats.count(resp.StatusCode)
	ex.code = resp.StatusCode
	if err := copyBody(w, resp.Body, resp.ContentLength < 0); err != nil {
		// Headers are out: the only honest signal left is to abort the
		// downstream response so the client sees a truncated body.
		panic(http.ErrAbortHandler)
	}
	for k, vv := range resp.Trailer {
		dst[http.TrailerPrefix+k] = vv
	}
	// A gRPC call's outcome is its status, in the trailers (or, for a
	// trailers-only answer, the headers), not the HTTP 200.
	if st := resp.Trailer.Get("Grpc-Status"); st != "" {
		ex.grpcStatus = st
	} else if st := resp.Header.Get("Grpc-Status"); st != "" {
		ex.grpcStatus = st
	}
}

// closeAfter makes net/http close an HTTP/1.x connection after the
// response. (On HTTP/2 the same header would end the whole connection.)
func closeAfter(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
}

func (l *listener) fail(w http.ResponseWriter, code int, msg string) int {
	l.stats.count(code)
	w.Header().Set("X-Meshbench-Proxy-Error", msg)
	http.Error(w, msg, code)
	return code
}

// requestHeaders prepares the upstream request's headers. Hop-by-hop
// headers go first: a header the route configuration adds (a node proxy's
// source identity) must not be removable by naming it in the request's
// Connection header.
func (l *listener) requestHeaders(r *http.Request, vh *VirtualHost) {
	l.prepareHeaders(r)
	rewriteHeaders(r.Header, vh)
}

// prepareHeaders turns the downstream request's headers into the upstream
// one's, in place: the handler owns them, and cloning the map is most of a
// proxy's per-request allocations.
func (l *listener) prepareHeaders(r *http.Request) {
	h := r.Header
	removeHopHeaders(h)
	// The values it adds share one array (each slice capped at its one
	// element, so an append elsewhere copies): one allocation, not three.
	var vals []string
	set := func(k, v string) {
		if vals == nil {
			vals = make([]string, 0, 3)
		}
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if l.cfg.ForwardedFor == ForwardedAppend {
		if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			if prior := h["X-Forwarded-For"]; len(prior) > 0 {
				ip = strings.Join(prior, ", ") + ", " + ip
			}
			set("X-Forwarded-For", ip)
		}
	}
	if _, ok := h["X-Forwarded-Proto"]; !ok {
		set("X-Forwarded-Proto", l.proto)
	}
	if _, ok := h["X-Forwarded-Host"]; !ok && r.Host != "" {
		set("X-Forwarded-Host", r.Host)
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // keep Go from adding its own
	}
}

var (
	errBodyTooLarge = errors.New("request body too large")
	// errNoEndpoints: the cluster has none (a control plane scaled it to
	// zero, or its endpoints have not arrived), as Envoy's "no healthy
	// upstream".
	errNoEndpoints = errors.New("no healthy upstream")
)

// forward sends r to the cluster, retrying as policy allows within the
// retry budget, and returns the response with a function to call once its
// body is consumed.
func (c *cluster) forward(ctx context.Context, r *http.Request, src *downstreamBody, policy *RetryPolicy, maxBody int64) (*http.Response, func(), error) {
	// Small bodies of known length are read first: the upstream request
	// then goes out in one write (headers and body, one syscall, one TLS
	// record) instead of two, and the body can be sent again on a retry.
	// Larger or streamed bodies are streamed and never retried.
	var body []byte
	retryable := policy != nil && policy.NumRetries > 0 && retryMethod(policy, r.Method)
	if r.ContentLength > 0 && r.ContentLength <= maxRetryBody {
		body = make([]byte, r.ContentLength)
		if _, err := io.ReadFull(src, body); err != nil {
			return nil, nil, err
		}
	} else if r.ContentLength != 0 {
		retryable = false
	}
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
			return nil, nil, errNoEndpoints
		}
		actx, cancel := ctx, context.CancelFunc(func() {})
		if policy != nil && policy.PerTryTimeout > 0 {
			actx, cancel = context.WithTimeout(ctx, policy.PerTryTimeout.D())
		}
		// Least request's latency samples come from answers on reused
		// connections, timed from when the request had one: a new
		// connection's dial and handshake, and the cold path it often
		// meets behind the endpoint (milliseconds, where an answer takes a
		// fraction of one), would make the endpoint last measured at
		// start-up look slow and starve it.
		var conn *connTrace
		if c.cfg.LBPolicy == LBLeastRequest {
			conn = &connTrace{}
			actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{GotConn: conn.got})
		}
		out := c.outgoing(actx, r, ep.addr, src, body, maxBody)
		t0 := time.Now()
		if conn != nil {
			conn.base = t0
		}
		ep.active.Add(1)
		resp, err := c.transport.RoundTrip(out)
		ep.active.Add(-1)
		if holdsRetry {
			c.retryDone()
			holdsRetry = false
		}
		o := classify(resp, err)
		// Failures the downstream caused (it went away, or sent a bad or
		// oversized body) say nothing about the endpoint.
		if !downstreamFault(r, src, err) {
			c.record(ep, o, time.Now())
			start, cold := t0, false
			if conn != nil {
				start, cold = conn.at()
			}
			if !cold || o != outcomeOK {
				ep.observeOutcome(time.Since(start), o)
			}
		}
		last := !retryable || attempt >= policy.NumRetries || ctx.Err() != nil
		if last || !shouldRetry(policy, resp, err) || !c.allowRetry() {
			if err != nil {
				cancel()
				return nil, nil, err
			}
			return resp, cancel, nil
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		cancel()
		c.stats.retries.Add(1)
		holdsRetry = true
		prev = ep
	}
}

// outgoing builds one attempt's upstream request.
func (c *cluster) outgoing(ctx context.Context, r *http.Request, endpoint string, src *downstreamBody, body []byte, maxBody int64) *http.Request {
	// The request and its URL in one allocation (WithContext copies the
	// request: a second).
	both := &struct {
		req http.Request
		url url.URL
	}{url: url.URL{Scheme: c.scheme, Host: endpoint, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}}
	out := &both.req
	*out = http.Request{
		Method:        r.Method,
		URL:           &both.url,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        r.Header,
		ContentLength: r.ContentLength,
		Host:          r.Host,
		Trailer:       r.Trailer,
	}
	switch {
	case body != nil:
		out.Body = io.NopCloser(bytes.NewReader(body))
	case r.ContentLength == 0:
	case r.ContentLength > 0:
		out.Body = &exactBody{r: io.LimitReader(src, r.ContentLength), c: src}
	default:
		out.Body = src
		if maxBody > 0 {
			out.Body = &cappedBody{r: src, left: maxBody}
		}
	}
	return out.WithContext(ctx)
}

// exactBody ends at the declared Content-Length. net/http's transport reads
// a request body once more after Content-Length bytes to check for excess;
// on the downstream body that read can come after the upstream answered and
// the proxy started its response, when the server has already closed the
// body, and the transport then tears down the upstream connection with the
// response in flight. Ending the body at its length avoids that read.
type exactBody struct {
	r io.Reader
	c io.Closer
}

func (b *exactBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *exactBody) Close() error               { return b.c.Close() }

// downstreamBody is the downstream request's body as the upstream
// request reads it. It records how reading ended: at the end (eof), or
// with an error (failed: the body was malformed, or the downstream went
// away), which makes the answer a 400, not a 503, and keeps the endpoint's
// health out of it.
//
// The transport goes on reading a body after RoundTrip returned when the
// upstream answered before the end of the upload. On HTTP/1.1, detach ends
// that before the handler returns: net/http must be the only one reading a
// request's body once the handler is done (it finishes the request, and
// starts its background read when the body ends; a read by the transport
// ending the body then raced with it and could hang the connection for
// good). HTTP/2 streams need no such care: closing the body ends a read.
type downstreamBody struct {
	rc       io.ReadCloser
	eof      atomic.Bool
	failed   atomic.Bool
	mu       sync.Mutex // held while the body is read
	detached atomic.Bool
	http1    bool
}

var errDetached = errors.New("request handled: the downstream body is no longer forwarded")

func (b *downstreamBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.detached.Load() {
		return 0, errDetached
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.eof.Store(true)
	case err != nil:
		b.failed.Store(true)
	}
	return n, err
}

// Close waits for a read in progress on HTTP/1.1 (net/http's body must not
// be closed while it is read: that hung connections), not on HTTP/2, where
// closing is how the transport ends a read (a stream whose answer came
// first, its client still sending).
func (b *downstreamBody) Close() error {
	if b.http1 {
		b.mu.Lock()
		defer b.mu.Unlock()
	}
	if b.detached.Load() {
		return nil
	}
	return b.rc.Close()
}

// detach makes the upstream side's further reads fail and waits for a
// read in progress; what is left of the body is net/http's. A body not
// read to its end leaves the connection closing (the handler said so), so
// a read still waiting on a client that paused is woken by a read
// deadline instead of being waited for.
func (b *downstreamBody) detach(w http.ResponseWriter) {
	b.detached.Store(true)
	if !b.eof.Load() {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	}
	b.mu.Lock()
	b.mu.Unlock() //nolint:staticcheck // waits for the read in progress
}

// cappedBody fails a streamed (chunked) body that grows past the limit.
type cappedBody struct {
	r    io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, errBodyTooLarge
	}
	return n, err
}

func (b *cappedBody) Close() error { return b.r.Close() }

// normalPath reports whether the request path is absolute, has no empty,
// "." or ".." segments, and no encoded "/" or "\\".
func normalPath(u *url.URL) bool { return normalPathOf(u.Path, u.RawPath) }

// normalPathOf is normalPath of a decoded path p and its escaped form raw
// (or "" when p needed no escaping).
func normalPathOf(p, raw string) bool {
	if p == "" || p[0] != '/' || strings.Contains(p, "//") || strings.ContainsRune(p, '\\') {
		return false
	}
	if raw = strings.ToLower(raw); strings.Contains(raw, "%2f") || strings.Contains(raw, "%5c") {
		return false
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean == p
}

// downstreamFault reports whether a failed attempt was the downstream's
// doing rather than the endpoint's.
func downstreamFault(r *http.Request, body *downstreamBody, err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, errBodyTooLarge) || errors.Is(r.Context().Err(), context.Canceled) {
		return true
	}
	return body != nil && body.failed.Load()
}

func classify(resp *http.Response, err error) outcome {
	if err != nil {
		return outcomeGatewayFailure
	}
	return statusOutcome(resp.StatusCode)
}

// statusOutcome is what an answer's status says of the endpoint.
func statusOutcome(code int) outcome {
	switch {
	case code == 502 || code == 503 || code == 504:
		return outcomeGatewayFailure
	case code >= 500:
		return outcome5xx
	}
	return outcomeOK
}

var idempotent = []string{"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}

func retryMethod(p *RetryPolicy, method string) bool {
	if len(p.Methods) > 0 {
		return slices.Contains(p.Methods, method)
	}
	return slices.Contains(idempotent, method)
}

// shouldRetry applies the policy's retry_on conditions to an attempt.
func shouldRetry(p *RetryPolicy, resp *http.Response, err error) bool {
	code := 0
	if err == nil {
		code = resp.StatusCode
	}
	return retryOn(p, code, err)
}

// retryOn applies the policy's retry_on conditions to an attempt that
// failed with err or was answered with code.
func retryOn(p *RetryPolicy, code int, err error) bool {
	for _, on := range p.RetryOn {
		switch on {
		case "connect-failure", "reset":
			if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				return true
			}
		case "5xx":
			if err != nil || code >= 500 {
				return true
			}
		case "gateway-error":
			if err == nil && (code == 502 || code == 503 || code == 504) {
				return true
			}
		case "retriable-status-codes":
			if err == nil && slices.Contains(p.RetriableStatusCodes, code) {
				return true
			}
		}
	}
	return false
}

// statusText is used by fault aborts and denials.
func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return t
	}
	return "status " + strconv.Itoa(code)
}

// connTrace is when an attempt got its connection, and whether it was a
// new one, as httptrace reports it (its hooks may run on other goroutines).
type connTrace struct {
	base  time.Time    // the attempt's start, set before the round trip
	after atomic.Int64 // nanoseconds from base to the connection, +1 (0: none yet)
	cold  atomic.Bool
}

func (c *connTrace) got(i httptrace.GotConnInfo) {
	c.cold.Store(!i.Reused)
	c.after.Store(int64(time.Since(c.base)) + 1)
}

// at is when the attempt had its connection (its start if it never got
// one) and whether the connection was new.
func (c *connTrace) at() (time.Time, bool) {
	if n := c.after.Load(); n > 0 {
		return c.base.Add(time.Duration(n - 1)), c.cold.Load()
	}
	return c.base, false
}
