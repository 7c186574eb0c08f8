package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshbench/meshbench/proxy/identity"
)

// tcpProxy forwards opaque TCP connections to a cluster, as Envoy's
// tcp_proxy filter does: one upstream connection per downstream one (or,
// tunnelling, one CONNECT stream), bytes copied both ways, half-closes
// passed on, idle connections closed.
type tcpProxy struct {
	l    *listener
	c    *cluster
	idle time.Duration

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newTCPProxy(l *listener, c *cluster) *tcpProxy {
	return &tcpProxy{l: l, c: c, idle: l.cfg.IdleTimeout.D(), conns: map[net.Conn]struct{}{}}
}

// serve accepts until ln is closed.
func (t *tcpProxy) serve(ln net.Listener) error {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		t.l.stats.connections.Add(1)
		t.track(conn, true)
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer t.track(conn, false)
			t.handle(conn)
		}()
	}
}

func (t *tcpProxy) track(c net.Conn, add bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if add {
		t.conns[c] = struct{}{}
	} else {
		delete(t.conns, c)
	}
}

// shutdown waits for connections to finish until ctx ends, then closes them.
func (t *tcpProxy) shutdown(ctx context.Context) {
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	t.mu.Lock()
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	<-done
}

func (t *tcpProxy) handle(down net.Conn) {
	defer down.Close()
	t.l.stats.requests.Add(1)
	if tc, ok := down.(*tls.Conn); ok {
		ctx, cancel := context.WithTimeout(context.Background(), t.l.cfg.HeaderTimeout.D())
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			t.l.stats.r4xx.Add(1)
			return
		}
	}
	if !t.c.admit() {
		t.l.stats.r5xx.Add(1)
		return
	}
	defer t.c.release()
	ep := t.c.pick(nil)
	if ep == nil {
		t.l.stats.upstreamErrors.Add(1)
		return
	}
	var up io.ReadWriteCloser
	var err error
	if t.l.cfg.TCPTunnel != "" {
		up, err = t.c.openStream(ep, t.l.cfg.TCPTunnel)
	} else {
		up, err = t.c.dialTCP(context.Background(), ep, t.source(down))
	}
	if err != nil {
		t.c.record(ep, openOutcome(err), time.Now())
		t.l.stats.upstreamErrors.Add(1)
		return
	}
	t.c.record(ep, outcomeOK, time.Now())
	defer up.Close()
	t.l.stats.r2xx.Add(1)
	// Every byte, either way, passes through up: its activity is the
	// connection's, and the idle timeout counts silence in both directions
	// as Envoy's does (a quiet direction beside a busy one is not idle;
	// nor is a connection idle only because one side half-closed).
	act := &active{ReadWriteCloser: up}
	stop := act.watch(t.idle, func() { down.Close(); up.Close() })
	defer stop()
	errc := make(chan error, 2)
	go func() { errc <- pipe(act, down) }()
	go func() { errc <- pipe(down, act) }()
	<-errc
	<-errc
}

// source is the identity of a downstream connection, which an internal
// upstream sees: its peer certificate's, or what an internal connection
// carries.
func (t *tcpProxy) source(down net.Conn) string {
	if tc, ok := down.(*tls.Conn); ok {
		if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
			return identity.PeerID(certs[0])
		}
		return ""
	}
	src, _ := internalSource(down)
	return src
}

// pipe copies src to dst. The end of src is passed on as a half-close of
// dst; an error reading src (a reset, or the idle timeout closing the
// connection) ends both directions instead, so the other side sees an
// abort, not a clean end. An error writing dst ends this direction only:
// the other may still be delivering what dst's side sent before it went
// (a stream its peer ended after answering).
func pipe(dst, src io.ReadWriteCloser) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			closeWrite(dst)
			return nil
		}
		if err != nil {
			src.Close()
			dst.Close()
			return err
		}
	}
}

// active is a connection that notes when bytes last moved through it,
// either way.
type active struct {
	io.ReadWriteCloser
	last atomic.Int64 // unix ns
}

func (a *active) Read(p []byte) (int, error) {
	n, err := a.ReadWriteCloser.Read(p)
	if n > 0 {
		a.last.Store(time.Now().UnixNano())
	}
	return n, err
}

func (a *active) Write(p []byte) (int, error) {
	n, err := a.ReadWriteCloser.Write(p)
	if n > 0 {
		a.last.Store(time.Now().UnixNano())
	}
	return n, err
}

func (a *active) CloseWrite() error {
	closeWrite(a.ReadWriteCloser)
	return nil
}

// watch calls onIdle once nothing has moved through a for idle (never
// when idle is 0), until the returned stop is called.
func (a *active) watch(idle time.Duration, onIdle func()) (stop func()) {
	if idle <= 0 {
		return func() {}
	}
	a.last.Store(time.Now().UnixNano())
	var mu sync.Mutex
	var timer *time.Timer
	stopped := false
	check := func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if rest := idle - time.Since(time.Unix(0, a.last.Load())); rest > 0 {
			timer.Reset(rest)
			return
		}
		onIdle()
	}
	mu.Lock()
	timer = time.AfterFunc(idle, check)
	mu.Unlock()
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		timer.Stop()
	}
}

func closeWrite(c io.Closer) {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := c.(closeWriter); ok {
		_ = cw.CloseWrite()
		return
	}
	c.Close()
}
