package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// HTTP/1.x framing rules net/http leaves to the handler.
//
// net/http parses request heads and frames bodies; the proxy adds what an
// intermediary owes its upstream and what net/http hides from handlers.
// A request with both Content-Length and Transfer-Encoding (RFC 9112
// section 6.1: the server MUST close the connection after responding) and
// an HTTP/1.0 request with Transfer-Encoding (its framing is faulty: 400,
// then close) cannot be told from the parsed request: net/http deletes
// Content-Length from chunked requests and Transfer-Encoding from HTTP/1.0
// ones before the handler runs. So every HTTP/1.x connection keeps the raw
// bytes of its current request head (recordingConn), and the handler reads
// the fields it needs there. On TLS listeners the handshake is done here,
// first: HTTP/2 connections go to net/http as the *tls.Conn it needs for
// ALPN, HTTP/1.x ones inside a recordingConn that still reports the TLS
// state (net/http takes it from a ConnectionState method).

// headSlop is how many bytes read before a request head can precede it in
// the recording: net/http's read-ahead (its 4 KiB bufio.Reader) plus the
// one byte of its background read, with room to spare.
const headSlop = 4<<10 + 512

// recordingConn is a downstream HTTP/1.x connection that keeps the bytes
// read from it since its current request began.
type recordingConn struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
	// limit bounds buf outside handlers: the longest head net/http reads
	// (MaxHeaderBytes plus its 4 KiB of slack) and what came before it.
	limit     int
	inHandler bool
	// off is set once the connection speaks HTTP/2 (cleartext prior
	// knowledge, told by its preface): its frames carry their own lengths.
	off bool
	// started is set once the connection's first bytes were looked at.
	started bool
}

// h2Preface begins every HTTP/2 connection (RFC 9113 section 3.4).
const h2Preface = "PRI * HTTP/2.0\r\n"

func newRecordingConn(c net.Conn, maxHeaderBytes int) *recordingConn {
	return &recordingConn{Conn: c, limit: maxHeaderBytes + 4<<10 + headSlop}
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.record(p[:n])
	}
	return n, err
}

func (c *recordingConn) record(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.off {
		return
	}
	if !c.started {
		c.buf = append(c.buf, p...)
		if len(c.buf) < len(h2Preface) && bytes.HasPrefix([]byte(h2Preface), c.buf) {
			return // too short to tell yet
		}
		c.started = true
		if bytes.HasPrefix(c.buf, []byte(h2Preface)) {
			c.off, c.buf = true, nil
		}
		return
	}
	limit := c.limit
	if c.inHandler {
		// The head was read when the handler started; from here on only
		// the next request's first bytes can matter.
		limit = headSlop
	}
	if len(p) >= limit {
		// A body's bytes: only the last ones can precede a head.
		c.buf = append(c.buf[:0], p[len(p)-limit:]...)
		return
	}
	c.buf = append(c.buf, p...)
	if len(c.buf) > 2*limit {
		c.buf = append(c.buf[:0], c.buf[len(c.buf)-limit:]...)
	}
}

// CloseWrite lets net/http half-close before closing (its defence against
// a reset destroying the last response), as it does on a bare TCP conn.
func (c *recordingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// tlsRecordingConn is a recordingConn over TLS; net/http sets Request.TLS
// from its ConnectionState.
type tlsRecordingConn struct {
	*recordingConn
	tc *tls.Conn
}

func (c *tlsRecordingConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

type recorderKey struct{}

// connContext gives each request's context its connection's recorder.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if src, ok := internalSource(c); ok {
		ctx = context.WithValue(ctx, internalSourceKey{}, src)
	}
	switch rc := c.(type) {
	case *recordingConn:
		return context.WithValue(ctx, recorderKey{}, rc)
	case *tlsRecordingConn:
		return context.WithValue(ctx, recorderKey{}, rc.recordingConn)
	}
	return ctx
}

// framing is what the raw request head says about a request's framing.
type framing struct {
	// reject is why the request must be answered 400 (and the connection
	// closed) without being forwarded; "" if it may be.
	reject string
	// close is set when the connection must close after the response.
	close bool
}

// checkFraming starts a request on its connection's recorder and returns
// what its raw head requires, and the recorder, whose end must be called
// when the handler returns (a method value here allocated per request).
// A request whose head cannot be found in the recording is treated as if
// it had the fields looked for: the connection closes.
func checkFraming(r *http.Request) (framing, *recordingConn) {
	rc, _ := r.Context().Value(recorderKey{}).(*recordingConn)
	if rc == nil {
		return framing{}, nil
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.inHandler = true
	var f framing
	chunked := len(r.TransferEncoding) > 0
	http10 := r.ProtoMinor == 0
	if chunked || http10 {
		found, hasCL, hasTE := headFields(rc.buf, r.Method+" "+r.RequestURI+" "+r.Proto)
		switch {
		case http10 && (hasTE || !found):
			// RFC 9112 section 6.1: faulty framing. net/http ignored the
			// field and framed the body by Content-Length (or as empty),
			// so what follows the head may be a body meant to be chunked.
			f = framing{reject: "Transfer-Encoding in an HTTP/1.0 request", close: true}
		case chunked && (hasCL || !found):
			// RFC 9112 section 6.1: forwarded with chunked framing only
			// (net/http removed Content-Length), then the connection
			// closes, as the RFC requires of a server.
			f.close = true
		}
	}
	return f, rc
}

// end ends the request checkFraming started (nothing for nil: no
// recorder).
func (c *recordingConn) end() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inHandler = false
	if len(c.buf) > headSlop {
		c.buf = append(c.buf[:0], c.buf[len(c.buf)-headSlop:]...)
	}
}

// headFields looks for the request line at the start of a line in buf and
// reports whether it found one, and whether a head that follows one
// carries Content-Length or Transfer-Encoding fields. Every occurrence is
// checked (an earlier body or pipelined bytes may repeat the line), so a
// decoy can only add a field, never hide one. net/http accepts only field
// names without surrounding whitespace and lines ending in LF or CRLF, so a
// field it parsed appears here as "name:" at the start of a line.
func headFields(buf []byte, requestLine string) (found, contentLength, transferEncoding bool) {
	line := []byte(requestLine)
	for i := 0; i < len(buf); {
		end := bytes.IndexByte(buf[i:], '\n')
		if end < 0 {
			break
		}
		cur := bytes.TrimSuffix(buf[i:i+end], []byte("\r"))
		i += end + 1
		if !bytes.Equal(cur, line) {
			continue
		}
		found = true
		cl, te := framingFields(buf[i:])
		contentLength, transferEncoding = contentLength || cl, transferEncoding || te != nil
	}
	return found, contentLength, transferEncoding
}

// framingFields reports whether the header fields at the start of buf (up
// to the empty line that ends them) carry Content-Length, and the value of
// their (last) Transfer-Encoding field, nil if none.
func framingFields(buf []byte) (contentLength bool, transferEncoding []byte) {
	for j := 0; j < len(buf); {
		e := bytes.IndexByte(buf[j:], '\n')
		if e < 0 {
			break
		}
		field := bytes.TrimSuffix(buf[j:j+e], []byte("\r"))
		j += e + 1
		if len(field) == 0 {
			break
		}
		name, value, ok := bytes.Cut(field, []byte(":"))
		if !ok {
			continue
		}
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			contentLength = true
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			transferEncoding = bytes.TrimSpace(value)
			if transferEncoding == nil {
				transferEncoding = []byte{}
			}
		}
	}
	return contentLength, transferEncoding
}

// framingListener hands net/http its downstream connections: cleartext
// ones inside a recordingConn; TLS ones after the handshake, HTTP/2 as the
// *tls.Conn and HTTP/1.x inside a tlsRecordingConn. Handshakes run on
// their own goroutines, bounded by handshakeTimeout, so a slow client
// never holds up Accept. A listener of the fasthttp engine (newFastListener)
// wraps HTTP/1.x connections its own way instead (wrap).
type framingListener struct {
	net.Listener
	tls              *tls.Config
	maxHeaderBytes   int
	handshakeTimeout time.Duration
	// wrap, when set, wraps each HTTP/1.x connection (tc is its TLS
	// connection, or nil) instead of a recordingConn.
	wrap func(c net.Conn, tc *tls.Conn) net.Conn

	ready     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
	err       error         // set before acceptErr closes, read after
	acceptErr chan struct{} // closed when Accept failed for good
}

func newFramingListener(ln net.Listener, tlsConf *tls.Config, maxHeaderBytes int, handshakeTimeout time.Duration, wrap func(net.Conn, *tls.Conn) net.Conn) net.Listener {
	l := &framingListener{Listener: ln, tls: tlsConf, maxHeaderBytes: maxHeaderBytes, handshakeTimeout: handshakeTimeout, wrap: wrap}
	if tlsConf != nil {
		l.ready = make(chan net.Conn)
		l.done = make(chan struct{})
		l.acceptErr = make(chan struct{})
		go l.acceptLoop()
	}
	return l
}

func (l *framingListener) Accept() (net.Conn, error) {
	if l.tls == nil {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.wrap != nil {
			return l.wrap(c, nil), nil
		}
		return newRecordingConn(c, l.maxHeaderBytes), nil
	}
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.acceptErr:
		return nil, l.err
	}
}

func (l *framingListener) Close() error {
	if l.done != nil {
		l.closeOnce.Do(func() { close(l.done) })
	}
	return l.Listener.Close()
}

// acceptLoop accepts TLS connections and starts their handshakes. The
// listener below is a socket's view (or its source filter), which
// retries temporary errors itself: any error ends the loop.
func (l *framingListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			l.err = err
			close(l.acceptErr)
			return
		}
		go l.handshake(c)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

func (l *framingListener) handshake(c net.Conn) {
	tc := tls.Server(c, l.tls)
	if l.handshakeTimeout > 0 {
		_ = c.SetDeadline(time.Now().Add(l.handshakeTimeout))
	}
	if err := tc.Handshake(); err != nil {
		// As net/http does: a client speaking plaintext HTTP to a TLS port
		// gets told so.
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			_ = re.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	var out net.Conn = tc
	switch {
	case tc.ConnectionState().NegotiatedProtocol == "h2":
	case l.wrap != nil:
		out = l.wrap(tc, tc)
	default:
		out = &tlsRecordingConn{recordingConn: newRecordingConn(tc, l.maxHeaderBytes), tc: tc}
	}
	select {
	case l.ready <- out:
	case <-l.done:
		c.Close()
	case <-l.acceptErr:
		c.Close()
	}
}
