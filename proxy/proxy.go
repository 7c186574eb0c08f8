package proxy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"
)

// Logger receives the proxy's few operational messages (not access logs).
type Logger interface {
	Logf(format string, args ...any)
}

type nopLogger struct{}

func (nopLogger) Logf(string, ...any) {}

// DefaultDrainTimeout is how long Run waits for in-flight requests when its
// context ends.
const DefaultDrainTimeout = 5 * time.Second

// Option configures a Proxy.
type Option func(*Proxy)

// WithLogger sends the proxy's messages to l.
func WithLogger(l Logger) Option { return func(p *Proxy) { p.log = l } }

// WithAccessLog sends access-log lines (for listeners that enable them)
// to w.
func WithAccessLog(w io.Writer) Option { return func(p *Proxy) { p.accessLog = w } }

// WithConfigSource adds the configuration as it was given (an xDS bundle in
// JSON) to /config_dump, beside the compiled form.
func WithConfigSource(raw json.RawMessage) Option { return func(p *Proxy) { p.source = raw } }

// WithDrainTimeout sets how long a shutdown waits for in-flight requests.
func WithDrainTimeout(d time.Duration) Option { return func(p *Proxy) { p.drain = d } }

// Proxy serves a Config: one HTTP server per listener plus the admin server.
type Proxy struct {
	cfg       Config
	log       Logger
	drain     time.Duration
	listeners []*listener
	clusters  map[string]*cluster
	ready     atomic.Bool

	mu    sync.Mutex
	addrs map[string]string

	metrics   *metrics
	accessLog io.Writer
	source    json.RawMessage
}

// New compiles cfg (which must be normalized and valid, as ParseConfig
// returns it) into a Proxy. Nothing listens until Run.
func New(cfg Config, opts ...Option) (*Proxy, error) {
	cfg.Normalize()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, log: nopLogger{}, drain: DefaultDrainTimeout, clusters: map[string]*cluster{}, accessLog: io.Discard}
	for _, o := range opts {
		o(p)
	}
	for _, c := range cfg.Clusters {
		cl, err := newCluster(c)
		if err != nil {
			return nil, err
		}
		p.clusters[c.Name] = cl
	}
	p.metrics = newMetrics(cfg.Mode)
	for _, l := range cfg.Listeners {
		ln, err := newListener(l, p.clusters)
		if err != nil {
			return nil, err
		}
		ln.metrics = p.metrics
		if l.AccessLog {
			ln.accessLog = accessLogger(p.accessLog, l.Name)
		}
		p.listeners = append(p.listeners, ln)
	}
	return p, nil
}

// Ready reports whether every listener is accepting connections.
func (p *Proxy) Ready() bool { return p.ready.Load() }

// Run binds every listener (failing fast if one cannot bind), serves until
// ctx ends, then drains in-flight requests for up to the drain timeout.
func (p *Proxy) Run(ctx context.Context) error {
	// Each bound listener has a way to serve and a way to drain: an HTTP
	// server, or a TCP proxy's accept loop.
	type bound struct {
		ln       net.Listener
		serve    func(net.Listener) error
		shutdown func(context.Context)
	}
	httpBound := func(srv *http.Server, ln net.Listener) bound {
		return bound{ln: ln, serve: srv.Serve, shutdown: func(ctx context.Context) {
			if srv.Shutdown(ctx) != nil {
				srv.Close()
			}
		}}
	}
	var all []bound
	closeAll := func() {
		for _, b := range all {
			b.ln.Close()
		}
	}
	for _, l := range p.listeners {
		ln, err := net.Listen("tcp", l.cfg.Address)
		if err != nil {
			closeAll()
			return fmt.Errorf("listener %q: %w", l.cfg.Name, err)
		}
		if l.cfg.TCPCluster != "" {
			if l.tls != nil {
				ln = tls.NewListener(ln, l.tls)
			}
			tp := newTCPProxy(l, p.clusters[l.cfg.TCPCluster])
			all = append(all, bound{ln: ln, serve: tp.serve, shutdown: func(ctx context.Context) {
				ln.Close()
				tp.shutdown(ctx)
			}})
			continue
		}
		srv := l.server()
		all = append(all, httpBound(srv, newFramingListener(ln, l.tls, l.cfg.MaxHeaderBytes, srv.ReadHeaderTimeout)))
	}
	if p.cfg.Admin != "" {
		ln, err := net.Listen("tcp", p.cfg.Admin)
		if err != nil {
			closeAll()
			return fmt.Errorf("admin listener: %w", err)
		}
		all = append(all, httpBound(&http.Server{Handler: p.adminHandler(), ReadHeaderTimeout: 5 * time.Second}, ln))
	}
	p.mu.Lock()
	p.addrs = map[string]string{}
	for i, l := range p.listeners {
		p.addrs[l.cfg.Name] = all[i].ln.Addr().String()
	}
	if p.cfg.Admin != "" {
		p.addrs[AdminListener] = all[len(all)-1].ln.Addr().String()
	}
	p.mu.Unlock()
	errc := make(chan error, len(all))
	for _, b := range all {
		go func() {
			if err := b.serve(b.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	p.ready.Store(true)
	p.log.Logf("proxy %s ready: %d listeners", p.cfg.Node, len(p.listeners))
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	p.ready.Store(false)
	dctx, cancel := context.WithTimeout(context.Background(), p.drain)
	defer cancel()
	var wg sync.WaitGroup
	for _, b := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.shutdown(dctx)
		}()
	}
	wg.Wait()
	for _, c := range p.clusters {
		c.transport.CloseIdleConnections()
	}
	for _, l := range p.listeners {
		st := l.stats.snapshot()
		p.log.Logf("listener %s: %d requests (2xx %d, 4xx %d, 5xx %d), %d connections",
			l.cfg.Name, st.Requests, st.Responses2xx, st.Responses4xx, st.Responses5xx, st.Connections)
	}
	p.log.Logf("proxy %s stopped", p.cfg.Node)
	return runErr
}

// AdminListener is the name Addr knows the admin listener by.
const AdminListener = "admin"

// Addr returns the address a listener is bound to ("" before Run binds it),
// which tells the port when the configuration asked for port 0.
func (p *Proxy) Addr(listener string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrs[listener]
}

// Stats is a snapshot of the proxy's counters.
type Stats struct {
	Listeners map[string]ListenerStats `json:"listeners"`
	Clusters  map[string]ClusterStats  `json:"clusters"`
}

// ListenerStats counts one listener's requests by outcome.
type ListenerStats struct {
	Requests       uint64 `json:"requests"`
	Responses2xx   uint64 `json:"responses2xx"`
	Responses3xx   uint64 `json:"responses3xx"`
	Responses4xx   uint64 `json:"responses4xx"`
	Responses5xx   uint64 `json:"responses5xx"`
	NoRoute        uint64 `json:"noRoute"`
	UpstreamErrors uint64 `json:"upstreamErrors"`
	Timeouts       uint64 `json:"timeouts"`
	InFlight       int64  `json:"inFlight"`
	// Connections counts accepted downstream connections.
	Connections uint64 `json:"connections"`
	Denied      uint64 `json:"denied"`
	FaultDelays uint64 `json:"faultDelays"`
	FaultAborts uint64 `json:"faultAborts"`
}

// Stats returns the current counters.
func (p *Proxy) Stats() Stats {
	s := Stats{Listeners: map[string]ListenerStats{}, Clusters: map[string]ClusterStats{}}
	for _, l := range p.listeners {
		s.Listeners[l.cfg.Name] = l.stats.snapshot()
	}
	for name, c := range p.clusters {
		s.Clusters[name] = c.snapshot()
	}
	return s
}

func (p *Proxy) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if !p.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, p.Stats())
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		p.metrics.write(w)
	})
	// Go's profiler, to profile before optimizing (Envoy's /cpuprofiler).
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /config_dump", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, struct {
			Source   json.RawMessage `json:"source,omitempty"`
			Compiled Config          `json:"compiled"`
		}{p.source, p.cfg})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
