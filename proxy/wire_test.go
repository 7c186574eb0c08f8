package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshbench/meshbench/proxy/identity"
)

// Helpers for tests that speak HTTP/1.1 on raw sockets: an upstream that
// keeps the exact bytes it received, and a client that reads a
// connection's responses to its end.

// wireUpstream is an HTTP/1.1 server that keeps, per connection, the raw
// bytes it received and, per request, what its handler saw. A request for
// a path ending in /reject is answered 413 with Connection: close before
// its body is read (an upload refused early); any other request's body is
// read and the answer is 200 with the path in X-Path.
type wireUpstream struct {
	addr   string
	mu     sync.Mutex
	raw    []*bytes.Buffer
	seen   []string
	open   int        // connections whose reads have not ended
	active int        // handlers running
	closed *sync.Cond // signalled when a connection's reads or a handler end
}

func newWireUpstream(t testing.TB) *wireUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &wireUpstream{addr: ln.Addr().String()}
	u.closed = sync.NewCond(&u.mu)
	srv := &http.Server{Handler: u, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(&teeListener{Listener: ln, u: u})
	t.Cleanup(func() { srv.Close() })
	return u
}

func (u *wireUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.active++
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		u.active--
		u.closed.Broadcast()
		u.mu.Unlock()
	}()
	if strings.HasSuffix(r.URL.Path, "/reject") {
		u.saw(fmt.Sprintf("%s %s (body not read)", r.Method, r.URL.RequestURI()))
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		u.saw(fmt.Sprintf("%s %s (body error: %v)", r.Method, r.URL.RequestURI(), err))
		return
	}
	u.saw(fmt.Sprintf("%s %s %q", r.Method, r.URL.RequestURI(), body))
	w.Header().Set("X-Path", r.URL.Path)
	io.WriteString(w, "ok")
}

func (u *wireUpstream) saw(s string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.seen = append(u.seen, s)
}

// requests returns what the handler saw, in order.
func (u *wireUpstream) requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.seen...)
}

var traceparentValue = regexp.MustCompile(`(?m)^(Traceparent: )[0-9a-f-]+\r$`)

// received returns the bytes of every connection, in the order they were
// accepted, with the proxy's random trace ids replaced by "<trace>".
func (u *wireUpstream) received() string {
	return strings.Join(u.connections(), "")
}

// connections returns the bytes each connection received, as received
// does.
func (u *wireUpstream) connections() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for _, c := range u.raw {
		out = append(out, traceparentValue.ReplaceAllString(c.String(), "${1}<trace>\r"))
	}
	return out
}

type teeListener struct {
	net.Listener
	u *wireUpstream
}

func (l *teeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	buf := &bytes.Buffer{}
	l.u.mu.Lock()
	l.u.raw = append(l.u.raw, buf)
	l.u.open++
	l.u.mu.Unlock()
	return &teeConn{Conn: c, u: l.u, buf: buf}, nil
}

type teeConn struct {
	net.Conn
	u    *wireUpstream
	buf  *bytes.Buffer
	done bool
}

func (c *teeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.u.mu.Lock()
	defer c.u.mu.Unlock()
	c.buf.Write(p[:n])
	if err != nil {
		c.endLocked()
	}
	return n, err
}

// Close ends the connection from the upstream's side (after a response
// that closes it, say).
func (c *teeConn) Close() error {
	c.u.mu.Lock()
	c.endLocked()
	c.u.mu.Unlock()
	return c.Conn.Close()
}

func (c *teeConn) endLocked() {
	if !c.done {
		c.done = true
		c.u.open--
		c.u.closed.Broadcast()
	}
}

// waitClosed waits until every connection the upstream accepted has ended
// and no handler runs (so what it received and handled is complete), for
// at most wireDeadline. A connection's end is read inside its last
// handler when that handler reads a body, so waiting for both suffices.
func (u *wireUpstream) waitClosed(t testing.TB) {
	t.Helper()
	timer := time.AfterFunc(wireDeadline, func() {
		u.mu.Lock()
		u.closed.Broadcast()
		u.mu.Unlock()
	})
	defer timer.Stop()
	start := time.Now()
	u.mu.Lock()
	defer u.mu.Unlock()
	for u.open > 0 || u.active > 0 {
		if time.Since(start) >= wireDeadline {
			t.Fatalf("%d upstream connections still open, %d handlers running after %s", u.open, u.active, wireDeadline)
		}
		u.closed.Wait()
	}
}

// wireResponse is one response as a raw client saw it.
type wireResponse struct {
	code int
	path string // the upstream's X-Path: which request it answers
}

// brief shows at most the first few responses of a long list (a desync can
// produce thousands).
func brief(rs []wireResponse) string {
	if len(rs) <= 6 {
		return fmt.Sprint(rs)
	}
	return fmt.Sprintf("%d responses, first %v", len(rs), rs[:6])
}

func (r wireResponse) String() string {
	if r.path == "" {
		return fmt.Sprint(r.code)
	}
	return fmt.Sprintf("%d %s", r.code, r.path)
}

// exchangeAll writes payload (from its own goroutine, so a peer that
// answers before reading cannot deadlock it) and reads responses until the
// peer closes the connection; it reports whether the close came after a
// response that said "Connection: close" or in the middle of nothing
// (closed is true either way). A peer that neither answers nor closes
// within the deadline fails the test: deadline is a bound on a hang, never
// a measurement.
func exchangeAll(t testing.TB, c net.Conn, payload string, deadline time.Duration) (resps []wireResponse, err error) {
	t.Helper()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(deadline))
	go func() { _, _ = io.WriteString(c, payload) }()
	br := bufio.NewReader(c)
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("no response and no close within %s (responses so far: %v)", deadline, resps)
			}
			// EOF or a reset: the peer closed.
			return resps, nil
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		resps = append(resps, wireResponse{code: resp.StatusCode, path: resp.Header.Get("X-Path")})
	}
}

// wireDeadline bounds a raw exchange that hangs; tests never wait for it
// otherwise (the peer closes, or answers a request that asks it to).
const wireDeadline = 20 * time.Second

// listenerKind is a way a downstream reaches one of the proxy's HTTP/1.1
// listeners.
type listenerKind struct {
	name string
	// configure turns a one-route config into this kind of listener.
	configure func(t testing.TB, cfg *Config)
	// dial opens a client connection to addr.
	dial func(t testing.TB, addr string) net.Conn
}

// httpListenerKinds are the listeners apps and peers send HTTP/1.1 to:
// cleartext (a sidecar's outbound listener, a node proxy's app-facing
// listener) and mutual TLS (a sidecar's inbound listener).
func httpListenerKinds() []listenerKind {
	return []listenerKind{
		{
			name:      "cleartext",
			configure: func(testing.TB, *Config) {},
			dial: func(t testing.TB, addr string) net.Conn {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				return c
			},
		},
		mtlsKind(),
	}
}

func mtlsKind() listenerKind {
	var client *tls.Config
	return listenerKind{
		name: "mtls",
		configure: func(t testing.TB, cfg *Config) {
			dir := t.TempDir()
			ca, err := identity.NewCA("td", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			sf, cf := identity.FilesIn(dir, "server"), identity.FilesIn(dir, "client")
			if err := errors.Join(ca.IssueFiles(sf, identity.SPIFFEID("td", "ns", "server"), time.Hour),
				ca.IssueFiles(cf, identity.SPIFFEID("td", "ns", "client"), time.Hour)); err != nil {
				t.Fatal(err)
			}
			src, err := identity.NewSource(cf)
			if err != nil {
				t.Fatal(err)
			}
			client = src.ClientConfig(nil, "http/1.1")
			cfg.Listeners[0].Direction = Inbound
			cfg.Listeners[0].TLS = &TLS{CertFile: sf.Cert, KeyFile: sf.Key, CAFile: sf.CA}
		},
		dial: func(t testing.TB, addr string) net.Conn {
			c, err := tls.Dial("tcp", addr, client)
			if err != nil {
				t.Fatal(err)
			}
			if p := c.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
				t.Fatalf("ALPN chose %q, want http/1.1", p)
			}
			return c
		},
	}
}

// wireProxy starts a proxy whose only route goes to up, as kind's
// listener.
func wireProxy(t testing.TB, kind listenerKind, up *wireUpstream) string {
	t.Helper()
	cfg := oneRoute(up.addr)
	kind.configure(t, &cfg)
	_, addr := startProxy(t, cfg)
	return addr
}

// sentinel asks for a response that proves the connection is still in
// step, and for the connection to close after it.
const sentinel = "GET /sentinel HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

// TestRecordingStopsForHTTP2: a cleartext connection that opens with the
// HTTP/2 preface (even split over reads) is not recorded; an HTTP/1.x one
// is, and a long body keeps only its last bytes.
func TestRecordingStopsForHTTP2(t *testing.T) {
	for _, reads := range [][]string{{h2Preface + "\r\nSM\r\n\r\n"}, {"PRI * HT", "TP/2.0\r\n", "\r\nSM\r\n\r\n"}} {
		c := newRecordingConn(nil, 1<<20)
		for _, r := range reads {
			c.record([]byte(r))
		}
		c.record(bytes.Repeat([]byte{0}, 1<<16))
		if !c.off || len(c.buf) != 0 {
			t.Errorf("reads %q: off %v, %d bytes recorded", reads, c.off, len(c.buf))
		}
	}
	c := newRecordingConn(nil, 1<<10)
	head := "POST /x HTTP/1.1\r\nHost: x\r\n\r\n"
	c.record([]byte(head[:3]))
	c.record([]byte(head[3:]))
	if c.off || string(c.buf) != head {
		t.Fatalf("HTTP/1.1: off %v, recorded %q", c.off, c.buf)
	}
	body := bytes.Repeat([]byte("b"), 1<<20)
	c.record(body)
	if len(c.buf) != c.limit {
		t.Errorf("after a 1 MiB read, %d bytes kept, want the last %d", len(c.buf), c.limit)
	}
}
