package proxy

import (
	"fmt"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/meshbench/meshbench/proxy/identity"
)

// cluster is a compiled Cluster: its endpoints and one keep-alive pool
// (http.Transport keeps a pool per endpoint address).
type cluster struct {
	cfg       Cluster
	endpoints []string
	next      atomic.Uint64
	transport *http.Transport
	scheme    string
}

func newCluster(cfg Cluster) (*cluster, error) {
	c := &cluster{cfg: cfg, scheme: "http"}
	for _, ep := range cfg.Endpoints {
		c.endpoints = append(c.endpoints, ep.Address)
	}
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout.D(), KeepAlive: -1}
	c.transport = &http.Transport{
		Proxy:               nil,
		DialContext:         dialer.DialContext,
		MaxIdleConns:        cfg.MaxIdleConns * len(c.endpoints),
		MaxIdleConnsPerHost: cfg.MaxIdleConns,
		IdleConnTimeout:     cfg.IdleTimeout.D(),
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		WriteBufferSize:     16 << 10,
		ReadBufferSize:      16 << 10,
	}
	if cfg.TLS != nil {
		src, err := cfg.TLS.source()
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %w", cfg.Name, err)
		}
		c.transport.TLSClientConfig = src.ClientConfig(identity.AllowIDs(cfg.TLS.AllowedIDs...), "http/1.1")
		c.scheme = "https"
	}
	return c, nil
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
