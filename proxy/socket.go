package proxy

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// socket is one bound listening address, served by one server at a time.
// A configuration update that changes how a listener serves (TLS, codec,
// timeouts) starts a new server on the same socket: connections accepted
// from then on go to the new server while the old one drains its own, and
// no connection is refused in between, as Envoy's listener drain does.
type socket struct {
	ln      net.Listener
	current atomic.Pointer[view]
	// failed receives an accept error that is neither a close nor
	// temporary: the listener is broken, and the proxy stops.
	failed func(error)
	// served is closed when the first view is served, done when the
	// socket closes: a connection accepted before the first holds until
	// one of them (the proxy's own clusters may dial an internal
	// listener an update adds before its server starts).
	served, done         chan struct{}
	servedOnce, doneOnce sync.Once
}

// listenSocket binds addr and starts handing its connections to the
// socket's current view.
func listenSocket(addr string, failed func(error)) (*socket, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return newSocket(ln, failed), nil
}

// newSocket starts handing ln's connections to the socket's current view.
func newSocket(ln net.Listener, failed func(error)) *socket {
	s := &socket{ln: ln, failed: failed, served: make(chan struct{}), done: make(chan struct{})}
	go s.dispatch()
	return s
}

func (s *socket) dispatch() {
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			if isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			s.failed(err)
			return
		}
		delay = 0
		s.hand(c)
	}
}

// hand gives c to the current view, or to the one that replaces it while
// it closes; with no view left (the listener is being removed), c is
// closed.
func (s *socket) hand(c net.Conn) {
	for {
		v := s.current.Load()
		if v == nil {
			select {
			case <-s.served:
				if s.current.Load() != nil {
					continue
				}
			case <-s.done:
			}
			c.Close()
			return
		}
		select {
		case v.conns <- c:
			return
		case <-v.closed:
			if s.current.Load() == v {
				c.Close()
				return
			}
		}
	}
}

// serveWith makes a new view current and returns it; the previous view
// gets no more connections.
func (s *socket) serveWith() *view {
	v := &view{s: s, queue: newQueue()}
	s.current.Store(v)
	s.servedOnce.Do(func() { close(s.served) })
	return v
}

// close stops accepting; connections already handed on are the servers'.
func (s *socket) close() {
	s.doneOnce.Do(func() { close(s.done) })
	s.current.Store(nil)
	s.ln.Close()
}

func (s *socket) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *socket) addr() string { return s.ln.Addr().String() }

// queue hands connections to Accept until it is shut.
type queue struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newQueue() queue { return queue{conns: make(chan net.Conn), closed: make(chan struct{})} }

func (q *queue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

// shut ends Accept; it reports whether this call did.
func (q *queue) shut() (did bool) {
	q.once.Do(func() { close(q.closed); did = true })
	return did
}

// view is one server's net.Listener on a socket. Closing it ends that
// server's Accept, not the socket.
type view struct {
	s *socket
	queue
}

func (v *view) Close() error {
	v.shut()
	return nil
}

func (v *view) Addr() net.Addr { return v.s.ln.Addr() }
