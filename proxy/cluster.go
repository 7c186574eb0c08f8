package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/sys/unix"

	"github.com/meshbench/meshbench/proxy/identity"
)

// roundTripper is an upstream connection pool.
type roundTripper interface {
	http.RoundTripper
	CloseIdleConnections()
}

// cluster is a compiled Cluster: its endpoints, one connection pool, and
// the state its circuit breakers, retry budget and outlier detection keep.
type cluster struct {
	cfg       Cluster
	eps       atomic.Pointer[[]*endpoint]
	next      atomic.Uint64
	transport roundTripper
	scheme    string
	tlsConf   *tls.Config // for TCP proxying; the transports hold their own
	httpTLS   *tls.Config // the HTTP transport's, for the fasthttp engine's pools
	dialer    *net.Dialer
	internal  *internals   // the proxy's internal listeners, for internal endpoints
	active    atomic.Int64 // requests in flight
	retries   atomic.Int64 // retries in flight
	stats     clusterStats
}

type clusterStats struct {
	overflow, retryOverflow, retries, ejections atomic.Uint64
}

// ClusterStats counts a cluster's resilience events.
type ClusterStats struct {
	Overflow      uint64 `json:"overflow"`
	RetryOverflow uint64 `json:"retryOverflow"`
	Retries       uint64 `json:"retries"`
	Ejections     uint64 `json:"ejections"`
	Active        int64  `json:"active"`
}

func (c *cluster) snapshot() ClusterStats {
	return ClusterStats{Overflow: c.stats.overflow.Load(), RetryOverflow: c.stats.retryOverflow.Load(),
		Retries: c.stats.retries.Load(), Ejections: c.stats.ejections.Load(), Active: c.active.Load()}
}

func newCluster(cfg Cluster, internal *internals) (*cluster, error) {
	c := &cluster{cfg: cfg, scheme: "http", internal: internal}
	c.setEndpoints(cfg.Endpoints)
	var tlsConf *tls.Config
	if cfg.TLS != nil {
		src, err := cfg.TLS.source()
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %w", cfg.Name, err)
		}
		proto := "http/1.1"
		if cfg.HTTP2 {
			proto = "h2"
		}
		tlsConf = src.ClientConfig(identity.AllowIDs(cfg.TLS.AllowedIDs...), proto)
		c.scheme = "https"
		c.tlsConf = src.ClientConfig(identity.AllowIDs(cfg.TLS.AllowedIDs...))
	}
	c.httpTLS = tlsConf
	c.dialer = &net.Dialer{Timeout: cfg.ConnectTimeout.D(), KeepAlive: -1}
	if cfg.Mark != 0 {
		c.dialer.Control = markControl(cfg.Mark)
	}
	if cfg.HTTP2 {
		c.transport = h2Transport(c.dial, tlsConf, cfg)
		return c, nil
	}
	t := &http.Transport{
		Proxy:               nil,
		DialContext:         c.dial,
		TLSClientConfig:     tlsConf,
		MaxIdleConnsPerHost: cfg.MaxIdleConns,
		MaxConnsPerHost:     cfg.CircuitBreakers.MaxConnections,
		IdleConnTimeout:     cfg.IdleTimeout.D(),
		DisableCompression:  true,
		WriteBufferSize:     16 << 10,
		ReadBufferSize:      16 << 10,
		Protocols:           new(http.Protocols),
	}
	t.Protocols.SetHTTP1(true)
	c.transport = t
	return c, nil
}

// h2Transport multiplexes every request to an endpoint as a stream of one
// long-lived connection (h2 over mutual TLS, or h2c), as ztunnel's HBONE
// pool does. Unlike net/http's Transport, x/net/http2's pool dials once per
// endpoint even when many requests start together, and with strict stream
// limits waits for a free stream rather than open a second connection.
func h2Transport(dial func(ctx context.Context, network, addr string) (net.Conn, error), tlsConf *tls.Config, cfg Cluster) *http2.Transport {
	t := &http2.Transport{
		TLSClientConfig:            tlsConf,
		DisableCompression:         true,
		StrictMaxConcurrentStreams: true,
		IdleConnTimeout:            cfg.IdleTimeout.D(),
		// One connection carries every request to the peer: ping it when
		// quiet, so a silently dead peer is noticed in seconds, not at the
		// next request's timeout.
		ReadIdleTimeout: 15 * time.Second,
		PingTimeout:     5 * time.Second,
	}
	if k := cfg.HTTP2Keepalive; k != nil {
		t.ReadIdleTimeout, t.PingTimeout = k.Interval.D(), k.Timeout.D()
	}
	if tlsConf == nil {
		t.AllowHTTP = true
		t.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return dial(ctx, network, addr)
		}
		return t
	}
	t.DialTLSContext = func(ctx context.Context, network, addr string, c *tls.Config) (net.Conn, error) {
		raw, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		conn := tls.Client(raw, c)
		if err := conn.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		return conn, nil
	}
	return t
}

// dial connects to the endpoint at addr (its id, for an internal one) for
// the cluster's connection pool. A cluster of internal endpoints never
// dials the network: an id no endpoint has any more (an update removed
// it) fails, rather than reach whatever listens at that address past the
// internal listener's tunnel.
func (c *cluster) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if !hasInternal(c.cfg.Endpoints) {
		return c.dialer.DialContext(ctx, network, addr)
	}
	for _, ep := range c.endpoints() {
		if strings.EqualFold(ep.addr, addr) {
			ctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout.D())
			defer cancel()
			return c.internal.dial(ctx, ep.internal, "")
		}
	}
	return nil, fmt.Errorf("cluster %q: no internal endpoint %s", c.cfg.Name, addr)
}

// hasInternal says whether eps are internal endpoints (Validate has them
// all internal or none).
func hasInternal(eps []Endpoint) bool { return len(eps) > 0 && eps[0].Internal != "" }

// endpoints returns the cluster's endpoints in force.
func (c *cluster) endpoints() []*endpoint { return *c.eps.Load() }

// setEndpoints replaces the cluster's endpoints, keeping what it knows of
// the addresses that stay (latency, active requests, ejection).
func (c *cluster) setEndpoints(eps []Endpoint) {
	known := map[Endpoint]*endpoint{}
	if old := c.eps.Load(); old != nil {
		for _, e := range *old {
			known[Endpoint{Address: e.addr, Internal: e.internal}] = e
		}
	}
	next := make([]*endpoint, 0, len(eps))
	for _, ep := range eps {
		e := known[ep]
		if e == nil {
			e = &endpoint{addr: ep.Address, internal: ep.Internal}
		}
		next = append(next, e)
		delete(known, ep)
	}
	c.eps.Store(&next)
	for _, gone := range known {
		if hc := gone.fast.Load(); hc != nil {
			hc.CloseIdleConnections() // requests in flight finish on theirs
		}
	}
}

// closeIdle closes the cluster's idle upstream connections (its
// transport's and its endpoints' fasthttp pools).
func (c *cluster) closeIdle() {
	c.transport.CloseIdleConnections()
	for _, e := range c.endpoints() {
		if hc := e.fast.Load(); hc != nil {
			hc.CloseIdleConnections()
		}
	}
}

// sameSettings reports whether cfg differs from the cluster's own
// configuration in its endpoints at most, so the cluster (its connection
// pool and its breakers' and outlier detection's state) can serve it.
func (c *cluster) sameSettings(cfg Cluster) bool {
	a, b := c.cfg, cfg
	if hasInternal(a.Endpoints) != hasInternal(b.Endpoints) {
		return false // how it dials
	}
	a.Endpoints, b.Endpoints = nil, nil
	return reflect.DeepEqual(a, b)
}

func (t *TLS) source() (*identity.Source, error) {
	return identity.NewSource(identity.Files{Cert: t.CertFile, Key: t.KeyFile, CA: t.CAFile})
}

// MarkedDialer returns a dialer whose connections carry SO_MARK mark (0:
// none), so that transparent interception lets the proxy's own traffic
// pass, as it does its upstream connections.
func MarkedDialer(mark int, timeout time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: timeout}
	if mark != 0 {
		d.Control = markControl(mark)
	}
	return d
}

// markControl sets SO_MARK on a socket before it connects.
func markControl(mark int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, mark)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("set SO_MARK %#x: %w", mark, serr)
		}
		return nil
	}
}
