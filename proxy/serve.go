package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync/atomic"
)

// boundListener is a listener being served: its socket, the server on it,
// and the compiled listener (routes, policy, clusters) its requests use,
// which an update swaps without touching the server.
type boundListener struct {
	name string
	// key is what the server was built from; an update that changes it
	// starts a new server (on the same socket if the address is the same).
	key  string
	addr string
	sock *socket
	cur  atomic.Pointer[listener]
	stop func(context.Context)
}

func (b *boundListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.cur.Load().ServeHTTP(w, r)
}

// serverKey is the part of a compiled listener its server is built from:
// everything but routes and policy, which requests read from the
// compiled listener in force. A TCP listener's server holds its cluster.
func serverKey(l *listener, clusters map[string]*cluster) string {
	c := l.cfg
	c.VirtualHosts, c.RBAC, c.AccessLog, c.MaxRequestBytes, c.RequestTimeout = nil, nil, false, 0, 0
	// By value below: a pointer would differ in every update.
	c.TLS, c.HTTP2Keepalive = nil, nil
	key := fmt.Sprintf("%+v", c)
	if t := l.cfg.TLS; t != nil {
		key += fmt.Sprintf("%+v", *t)
	}
	if k := l.cfg.HTTP2Keepalive; k != nil {
		key += fmt.Sprintf(" keepalive %+v", *k)
	}
	if c.TCPCluster != "" {
		key += fmt.Sprintf("%p", clusters[c.TCPCluster])
	}
	if l.connect {
		key += " connect" // its HTTP/2 windows (http2Config)
	}
	if l.fast {
		key += " fasthttp"
	}
	return key
}

// bindLocked binds what st's listeners need that is not bound yet (new
// listeners, new addresses) and returns the function that puts st's
// listeners into service: swaps the compiled listeners of servers that
// stay, starts new servers (taking over sockets whose server changed),
// and drains and closes what st no longer has. A bind error closes what
// this call bound and changes nothing. The caller holds p.mu.
func (p *Proxy) bindLocked(st *state) (func(), error) {
	type plan struct {
		l    *listener
		key  string
		old  *boundListener
		sock *socket
		keep bool
	}
	var plans []plan
	var opened []*socket
	for name, l := range st.listeners {
		if p.fastHTTP {
			why := fastUnsupported(l)
			l.fast = why == ""
			if !l.fast && l.cfg.TCPCluster == "" {
				p.log.Logf("listener %q: served by net/http, not fasthttp: %s", name, why)
			}
		}
		key := serverKey(l, st.clusters)
		old := p.bound[name]
		switch {
		case old != nil && old.key == key:
			plans = append(plans, plan{l: l, old: old, keep: true})
		case old != nil && old.addr == l.cfg.Address:
			plans = append(plans, plan{l: l, key: key, old: old, sock: old.sock})
		default:
			var sock *socket
			var err error
			if l.cfg.Internal {
				sock, err = p.internal.listen(name, p.fail)
			} else {
				sock, err = listenSocket(l.cfg.Address, p.fail)
			}
			if err != nil {
				for _, s := range opened {
					s.close()
				}
				return nil, fmt.Errorf("listener %q: %w", name, err)
			}
			opened = append(opened, sock)
			plans = append(plans, plan{l: l, key: key, old: old, sock: sock})
		}
	}
	return func() {
		for _, pl := range plans {
			if pl.keep {
				pl.old.cur.Store(pl.l)
				continue
			}
			b := &boundListener{name: pl.l.cfg.Name, key: pl.key, addr: pl.l.cfg.Address, sock: pl.sock}
			b.cur.Store(pl.l)
			p.start(b, st)
			p.bound[b.name] = b
			if old := pl.old; old != nil {
				if old.sock != pl.sock {
					old.sock.unname()
				}
				go p.drainAway(old, old.sock != pl.sock)
			}
		}
		for name, b := range p.bound {
			if st.listeners[name] == nil {
				b.sock.unname()
				delete(p.bound, name)
				go p.drainAway(b, true)
			}
		}
	}, nil
}

// drainAway stops a server that was replaced or removed, letting its
// requests in flight finish, and closes its socket if nothing else uses it.
func (p *Proxy) drainAway(b *boundListener, closeSocket bool) {
	ctx, cancel := context.WithTimeout(context.Background(), p.drain)
	defer cancel()
	b.stop(ctx)
	if closeSocket {
		b.sock.close()
	}
}

// start serves b's socket with a new server for its compiled listener.
func (p *Proxy) start(b *boundListener, st *state) {
	l := b.cur.Load()
	v := b.sock.serveWith()
	// Sources are filtered before anything is read (a TLS handshake).
	ln := l.filterSources(v)
	if l.cfg.TCPCluster != "" {
		tp := newTCPProxy(l, st.clusters[l.cfg.TCPCluster])
		if l.tls != nil {
			ln = tls.NewListener(ln, l.tls)
		}
		go func() {
			if err := tp.serve(ln); err != nil {
				p.fail(fmt.Errorf("listener %q: %w", b.name, err))
			}
		}()
		b.stop = func(ctx context.Context) {
			v.Close()
			tp.shutdown(ctx)
		}
		return
	}
	if l.fast {
		p.startFast(b, l, ln)
		return
	}
	srv := l.server(b)
	go func() {
		if err := srv.Serve(newFramingListener(ln, l.tls, l.cfg.MaxHeaderBytes, srv.ReadHeaderTimeout, nil)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.fail(fmt.Errorf("listener %q: %w", b.name, err))
		}
	}()
	b.stop = func(ctx context.Context) {
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
	}
}

// stop ends b's server and closes its socket (the proxy is stopping).
func (b *boundListener) stopAndClose(ctx context.Context) {
	b.stop(ctx)
	b.sock.close()
}

// tunnelStreamWindow is the receive window of one CONNECT stream: a
// stream whose upstream reads slowly holds at most this much here.
const tunnelStreamWindow = 256 << 10

// http2Config is the listener's HTTP/2 settings: its stream bound, its
// keepalive and, for a listener ending CONNECT streams, a receive window
// per connection as large as all of its streams' together (at most
// 1 GiB), as ztunnel does: a stream
// whose upstream stalls fills its own window only, and the tunnel's other
// streams keep flowing (with the default 1 MiB connection window, four
// stalled streams would stop every other one).
func (l *listener) http2Config() *http.HTTP2Config {
	c := &http.HTTP2Config{MaxConcurrentStreams: l.cfg.MaxConcurrentStreams}
	if k := l.cfg.HTTP2Keepalive; k != nil {
		c.SendPingTimeout, c.PingTimeout = k.Interval.D(), k.Timeout.D()
	}
	if l.connect {
		c.MaxReceiveBufferPerStream = tunnelStreamWindow
		c.MaxReceiveBufferPerConnection = min(l.cfg.MaxConcurrentStreams*tunnelStreamWindow, 1<<30)
	}
	return c
}

// server is the HTTP server of a listener, serving h.
func (l *listener) server(h http.Handler) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.cfg.HeaderTimeout.D(),
		IdleTimeout:       l.cfg.IdleTimeout.D(),
		MaxHeaderBytes:    l.cfg.MaxHeaderBytes,
		Protocols:         new(http.Protocols),
		HTTP2:             l.http2Config(),
		TLSConfig:         l.tls.Clone(), // net/http edits its own (http2ConfigureServer) while the framing listener handshakes with l.tls
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnContext:       connContext,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				l.stats.connections.Add(1)
			}
		},
	}
	http1 := l.cfg.Codec != CodecHTTP2
	http2 := l.cfg.Codec != CodecHTTP1
	srv.Protocols.SetHTTP1(http1)
	if l.tls != nil {
		srv.Protocols.SetHTTP2(http2)
	} else {
		srv.Protocols.SetUnencryptedHTTP2(http2)
	}
	return srv
}
