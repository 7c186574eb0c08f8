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
		up, err = t.c.dialTCP(context.Background(), ep)
	}
	if err != nil {
		t.c.record(ep, outcomeGatewayFailure, time.Now())
		t.l.stats.upstreamErrors.Add(1)
		return
	}
	t.c.record(ep, outcomeOK, time.Now())
	defer up.Close()
	t.l.stats.r2xx.Add(1)
	var last atomic.Int64 // last time bytes moved either way, unix ns
	last.Store(time.Now().UnixNano())
	errc := make(chan error, 2)
	go func() { errc <- t.pipe(up, down, &last) }()
	go func() { errc <- t.pipe(down, up, &last) }()
	<-errc
	<-errc
}

// pipe copies src to dst and passes the end of src on as a half-close of
// dst. The idle timeout counts silence in both directions (last), as
// Envoy's does: a quiet direction beside a busy one is not idle.
func (t *tcpProxy) pipe(dst, src io.ReadWriteCloser, last *atomic.Int64) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	// A tunnel's stream has no deadlines: its silence is noticed on the
	// downstream connection, whose timeout closes both.
	timed, _ := src.(interface{ SetReadDeadline(time.Time) error })
	for {
		if t.idle > 0 && timed != nil {
			_ = timed.SetReadDeadline(time.Unix(0, last.Load()).Add(t.idle))
		}
		n, err := src.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		var ne net.Error
		if err != nil && errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, last.Load())) < t.idle {
			continue // the other direction moved meanwhile
		}
		if err != nil {
			closeWrite(dst)
			if errors.Is(err, io.EOF) {
				return nil
			}
			// An idle timeout or reset ends both directions.
			src.Close()
			dst.Close()
			return err
		}
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
