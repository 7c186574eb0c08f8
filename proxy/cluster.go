package proxy

import (
	"net"
	"net/http"
	"sync/atomic"
)

// cluster is a compiled Cluster: its endpoints and one keep-alive pool
// (http.Transport keeps a pool per endpoint address).
type cluster struct {
	cfg       Cluster
	endpoints []string
	next      atomic.Uint64
	transport *http.Transport
}

func newCluster(cfg Cluster) *cluster {
	c := &cluster{cfg: cfg}
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
	return c
}

// pick chooses the endpoint for the next request, round robin.
func (c *cluster) pick() string {
	if len(c.endpoints) == 1 {
		return c.endpoints[0]
	}
	return c.endpoints[(c.next.Add(1)-1)%uint64(len(c.endpoints))]
}
