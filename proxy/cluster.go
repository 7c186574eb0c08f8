package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"

	"golang.org/x/net/http2"
	"golang.org/x/sys/unix"

	"github.com/meshbench/meshbench/proxy/identity"
)

// roundTripper is an upstream connection pool.
type roundTripper interface {
	http.RoundTripper
	CloseIdleConnections()
}

// cluster is a compiled Cluster: its endpoints and one connection pool.
type cluster struct {
	cfg       Cluster
	endpoints []string
	next      atomic.Uint64
	transport roundTripper
	scheme    string
}

func newCluster(cfg Cluster) (*cluster, error) {
	c := &cluster{cfg: cfg, scheme: "http"}
	for _, ep := range cfg.Endpoints {
		c.endpoints = append(c.endpoints, ep.Address)
	}
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
	}
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout.D(), KeepAlive: -1}
	if cfg.Mark != 0 {
		dialer.Control = markControl(cfg.Mark)
	}
	if cfg.HTTP2 {
		c.transport = h2Transport(dialer, tlsConf, cfg)
		return c, nil
	}
	t := &http.Transport{
		Proxy:               nil,
		DialContext:         dialer.DialContext,
		TLSClientConfig:     tlsConf,
		MaxIdleConns:        cfg.MaxIdleConns * len(c.endpoints),
		MaxIdleConnsPerHost: cfg.MaxIdleConns,
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
func h2Transport(dialer *net.Dialer, tlsConf *tls.Config, cfg Cluster) *http2.Transport {
	t := &http2.Transport{
		TLSClientConfig:            tlsConf,
		DisableCompression:         true,
		StrictMaxConcurrentStreams: true,
		IdleConnTimeout:            cfg.IdleTimeout.D(),
	}
	if tlsConf == nil {
		t.AllowHTTP = true
		t.DialTLSContext = func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		}
		return t
	}
	t.DialTLSContext = func(ctx context.Context, network, addr string, c *tls.Config) (net.Conn, error) {
		raw, err := dialer.DialContext(ctx, network, addr)
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

func (t *TLS) source() (*identity.Source, error) {
	return identity.NewSource(identity.Files{Cert: t.CertFile, Key: t.KeyFile, CA: t.CAFile})
}

// pick chooses the endpoint for the next request, round robin.
func (c *cluster) pick() string {
	if len(c.endpoints) == 1 {
		return c.endpoints[0]
	}
	return c.endpoints[(c.next.Add(1)-1)%uint64(len(c.endpoints))]
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
