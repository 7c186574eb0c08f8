package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// HBONE-style tunnels: a TCP listener with TCPTunnel carries each
// connection as an HTTP/2 CONNECT stream over its cluster's pooled
// connection to the peer (openStream), and a listener with Connect routes
// ends such streams, handing their bytes to a local endpoint as a TCP
// connection (serveConnect). Peers authenticate each other with the mutual
// TLS of the cluster and the listener; the listener's RBAC sees the
// stream's source identity and its authority.

// stream is one CONNECT stream's two directions: what is written goes up
// as the request body, what is read is the response body.
type stream struct {
	up   *io.PipeWriter
	down io.ReadCloser
}

func (s *stream) Read(p []byte) (int, error)  { return s.down.Read(p) }
func (s *stream) Write(p []byte) (int, error) { return s.up.Write(p) }

// CloseWrite ends the request body (END_STREAM): the peer's upstream sees
// a half-close.
func (s *stream) CloseWrite() error { return s.up.Close() }

// Close ends both directions; the transport resets the stream if the peer
// has not finished it.
func (s *stream) Close() error {
	s.up.CloseWithError(net.ErrClosed)
	return s.down.Close()
}

// tunnelRefusal is a CONNECT the peer answered with other than 200.
type tunnelRefusal struct{ status int }

func (e *tunnelRefusal) Error() string {
	return fmt.Sprintf("tunnel refused: %d %s", e.status, http.StatusText(e.status))
}

// openOutcome is what a failure to open an upstream connection or stream
// says of the peer, for outlier detection: a stream refused below 500
// (RBAC, no route) is the peer answering, as a 4xx answer to a request
// is; a 5xx or no answer is its failure.
func openOutcome(err error) outcome {
	var r *tunnelRefusal
	if errors.As(err, &r) {
		return statusOutcome(r.status)
	}
	return outcomeGatewayFailure
}

// openStream opens a CONNECT stream to authority through ep, on the
// cluster's pooled HTTP/2 connection to it (dialled on first use), within
// the cluster's connect timeout.
func (c *cluster) openStream(ep *endpoint, authority string) (*stream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	timer := time.AfterFunc(c.cfg.ConnectTimeout.D(), cancel)
	pr, pw := io.Pipe()
	req := (&http.Request{
		Method: http.MethodConnect, URL: &url.URL{Scheme: c.scheme, Host: ep.addr}, Host: authority,
		Header: http.Header{}, Body: pr, ContentLength: -1, Proto: "HTTP/2.0", ProtoMajor: 2,
	}).WithContext(ctx)
	resp, err := c.transport.RoundTrip(req)
	if !timer.Stop() || err != nil {
		cancel()
		pw.CloseWithError(net.ErrClosed)
		if err == nil {
			resp.Body.Close()
			err = context.DeadlineExceeded
		}
		return nil, fmt.Errorf("CONNECT %s via %s: %w", authority, ep.addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		pw.CloseWithError(net.ErrClosed)
		return nil, fmt.Errorf("CONNECT %s via %s: %w", authority, ep.addr, &tunnelRefusal{status: resp.StatusCode})
	}
	// The stream lives until it is closed: its context ends with it.
	return &stream{up: pw, down: &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}}, nil
}

// dialTCP connects to ep as a TCP proxy's upstream, for source (the
// identity an internal endpoint's listener sees): mutual TLS when the
// cluster has it.
func (c *cluster) dialTCP(ctx context.Context, ep *endpoint, source string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout.D())
	defer cancel()
	var up net.Conn
	var err error
	if ep.internal != "" {
		up, err = c.internal.dial(ctx, ep.internal, source)
	} else {
		up, err = c.dialer.DialContext(ctx, "tcp", ep.addr)
	}
	if err != nil || c.tlsConf == nil {
		return up, err
	}
	tc := tls.Client(up, c.tlsConf)
	if err := tc.HandshakeContext(ctx); err != nil {
		up.Close()
		return nil, err
	}
	return tc, nil
}

// serveConnect ends a CONNECT stream: the route for its authority names
// the cluster whose endpoint takes its bytes. It answers 200 once that
// endpoint is connected and then copies both ways until either ends;
// what it returns is the status the exchange is recorded with.
func (l *listener) serveConnect(w http.ResponseWriter, r *http.Request, ex *exchange) int {
	if r.ProtoMajor != 2 {
		return l.fail(w, http.StatusBadRequest, "CONNECT is carried over HTTP/2 only")
	}
	// RBAC first: a caller not allowed learns nothing of which
	// authorities have routes here.
	ex.source = l.source(r)
	if l.rbac != nil && !l.rbac.allows(ex.source, r.Method, r.Host, r.URL.Path) {
		l.stats.denied.Add(1)
		return l.fail(w, http.StatusForbidden, "RBAC: access denied")
	}
	_, route := l.match(r.Host, "", r.Method, r.Header, "")
	if route == nil {
		l.stats.noRoute.Add(1)
		return l.fail(w, http.StatusNotFound, "no route for CONNECT "+r.Host)
	}
	c, _ := l.routes[route].pick()
	ex.cluster = c.cfg.Name
	if !c.admit() {
		return l.fail(w, http.StatusServiceUnavailable, "upstream overflow (circuit breaker)")
	}
	defer c.release()
	ep := c.pick(nil)
	if ep == nil {
		l.stats.upstreamErrors.Add(1)
		return l.fail(w, http.StatusServiceUnavailable, "no healthy upstream")
	}
	up, err := c.dialTCP(r.Context(), ep, ex.source)
	if err != nil {
		c.record(ep, outcomeGatewayFailure, time.Now())
		l.stats.upstreamErrors.Add(1)
		return l.fail(w, http.StatusServiceUnavailable, "upstream connect error")
	}
	c.record(ep, outcomeOK, time.Now())
	act := &active{ReadWriteCloser: up}
	defer act.Close()
	// A stream the peer resets, or its connection's end, ends the upstream
	// connection too: the copies below then return.
	unlink := context.AfterFunc(r.Context(), func() { act.Close() })
	defer unlink()
	rc := http.NewResponseController(w)
	// Idle: the upstream connection closes, and a write to the peer stuck
	// on its flow control (a peer alive but not reading) fails at once.
	stop := act.watch(l.cfg.IdleTimeout.D(), func() { act.Close(); _ = rc.SetWriteDeadline(time.Now()) })
	defer stop()
	w.WriteHeader(http.StatusOK)
	l.stats.count(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return http.StatusOK
	}
	go func() {
		bp := bufPool.Get().(*[]byte)
		defer bufPool.Put(bp)
		if _, err := io.CopyBuffer(act, r.Body, *bp); err == nil {
			closeWrite(act) // the stream's END_STREAM: a half-close
			return
		}
		act.Close() // a reset stream ends the connection
	}()
	// The upstream's end ends the stream: END_STREAM after its last bytes
	// when it ended cleanly (a client still sending then has its side
	// reset), a reset stream when it failed or went idle, so that the
	// peer's downstream sees an abort rather than a clean end.
	if err := copyBody(w, act, true); err != nil {
		ex.code = http.StatusOK
		panic(http.ErrAbortHandler)
	}
	return http.StatusOK
}
