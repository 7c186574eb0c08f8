package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Internal listeners, as Envoy's internal_listener and
// envoy_internal_address: a listener with no address, which the proxy's
// own clusters connect to in-process by its name. A waypoint chains them:
// the end of a CONNECT stream hands the stream's bytes to an internal
// HTTP listener (routes, retries, faults, L7 RBAC), whose clusters send
// each request through an internal TCP listener that tunnels it on to the
// destination's node. An internal connection carries the identity of the
// connection it was opened for (a CONNECT stream's source), as Envoy's
// internal_upstream transport socket passes the downstream's filter
// state, so the internal listener's RBAC sees the original caller.

// internalAddr is an internal listener's address: its name.
type internalAddr string

func (a internalAddr) Network() string { return "internal" }
func (a internalAddr) String() string  { return string(a) }

// internalConn is the accepting end of an internal connection, with the
// identity it was opened for ("" for none).
type internalConn struct {
	*pipeConn
	source string
}

// pipeListener is an internal listener's socket: Accept returns the
// accepting ends of the connections dialled to it.
type pipeListener struct {
	name string
	reg  *internals
	queue
}

// Close stops accepting and takes the listener's name out of service.
func (l *pipeListener) Close() error {
	if l.shut() {
		l.reg.remove(l)
	}
	return nil
}

func (l *pipeListener) Addr() net.Addr { return internalAddr(l.name) }

// dial opens a connection to the listener (pipePair), whose other end
// Accept returns.
func (l *pipeListener) dial(ctx context.Context, source string) (net.Conn, error) {
	mine, theirs := pipePair()
	var err error
	select {
	case l.conns <- &internalConn{pipeConn: theirs, source: source}:
		return mine, nil
	case <-l.closed:
		err = net.ErrClosed
	case <-ctx.Done():
		err = ctx.Err()
	}
	mine.Close()
	theirs.Close()
	return nil, fmt.Errorf("internal listener %q: %w", l.name, err)
}

// pipeConn is one end of an in-memory connection: a net.Pipe for each
// direction, so that, as a TCP connection, it half-closes (CloseWrite
// ends the peer's reads with EOF while this end still reads) and takes
// deadlines, with no system call per read or write (BenchmarkWaypoint:
// Unix socket pairs in its place cost a fifth more a request).
type pipeConn struct {
	r net.Conn // this end of the pipe the peer writes
	w net.Conn // this end of the pipe this end writes
}

// pipePair is a connected pair of pipeConns.
func pipePair() (*pipeConn, *pipeConn) {
	aw, br := net.Pipe()
	bw, ar := net.Pipe()
	return &pipeConn{r: ar, w: aw}, &pipeConn{r: br, w: bw}
}

func (c *pipeConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *pipeConn) Write(p []byte) (int, error) { return c.w.Write(p) }

// CloseWrite ends what this end sends: the peer reads EOF.
func (c *pipeConn) CloseWrite() error { return c.w.Close() }

// Close ends both directions: the peer reads EOF, and its writes fail.
func (c *pipeConn) Close() error {
	c.w.Close()
	return c.r.Close()
}

func (c *pipeConn) LocalAddr() net.Addr  { return internalAddr("internal") }
func (c *pipeConn) RemoteAddr() net.Addr { return internalAddr("internal") }

func (c *pipeConn) SetDeadline(t time.Time) error {
	return errors.Join(c.r.SetReadDeadline(t), c.w.SetWriteDeadline(t))
}
func (c *pipeConn) SetReadDeadline(t time.Time) error  { return c.r.SetReadDeadline(t) }
func (c *pipeConn) SetWriteDeadline(t time.Time) error { return c.w.SetWriteDeadline(t) }

// internals are a proxy's internal listeners in service, by name.
type internals struct {
	mu sync.RWMutex
	m  map[string]*pipeListener
}

func newInternals() *internals { return &internals{m: map[string]*pipeListener{}} }

// listen binds name, replacing nothing: a name in service is an error,
// as a bound port is.
func (r *internals) listen(name string, failed func(error)) (*socket, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m[name] != nil {
		return nil, fmt.Errorf("internal listener %q: name in use", name)
	}
	l := &pipeListener{name: name, reg: r, queue: newQueue()}
	r.m[name] = l
	return newSocket(l, failed), nil
}

func (r *internals) remove(l *pipeListener) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m[l.name] == l {
		delete(r.m, l.name)
	}
}

// dial connects to the internal listener called name, for source.
func (r *internals) dial(ctx context.Context, name, source string) (net.Conn, error) {
	if r == nil {
		return nil, fmt.Errorf("internal listener %q: this proxy has none", name)
	}
	r.mu.RLock()
	l := r.m[name]
	r.mu.RUnlock()
	if l == nil {
		return nil, fmt.Errorf("internal listener %q: not listening", name)
	}
	return l.dial(ctx, source)
}

// unname takes an internal listener's socket out of service at once, as
// it is replaced or removed: dials to its name then fail (or reach its
// successor) rather than a draining server. Other sockets drain as they
// are.
func (s *socket) unname() {
	if pl, ok := s.ln.(*pipeListener); ok {
		pl.Close()
	}
}

type internalSourceKey struct{}

// internalSource is the identity an internal connection carries, if c is
// (or wraps) one.
func internalSource(c net.Conn) (string, bool) {
	if rc, ok := c.(*recordingConn); ok {
		c = rc.Conn
	}
	ic, ok := c.(*internalConn)
	if !ok {
		return "", false
	}
	return ic.source, true
}
