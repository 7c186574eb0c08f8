package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/pprof"
	"slices"
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

// Proxy serves a Config: one server per listener plus the admin server.
// Update replaces the Config while it runs: routes, clusters and endpoints
// swap atomically (a request sees one configuration from start to end),
// listeners are added, removed and rebound without refusing a connection,
// and in-flight requests finish on what they started with.
type Proxy struct {
	node, admin, mode string
	log               Logger
	drain             time.Duration
	metrics           *metrics
	accessLog         io.Writer
	source            json.RawMessage
	version           string
	// fastHTTP serves HTTP/1.1 listeners on the fasthttp engine where it
	// can (fast.go).
	fastHTTP bool
	// awaiting is set for a proxy that starts without a configuration (one
	// that a control plane sends): it is not ready before the first.
	awaiting bool

	state atomic.Pointer[state]
	ready atomic.Bool

	mu      sync.Mutex // serializes Update with Run's start and end
	running bool
	bound   map[string]*boundListener
	// internal are the internal listeners bound, which clusters dial.
	internal *internals
	adminLn  *socket

	statsMu sync.Mutex
	stats   map[string]*listenerStats // by listener name, kept across updates

	errc    chan error
	updates uint64
}

// state is one compiled configuration.
type state struct {
	version   string
	source    json.RawMessage
	cfg       Config
	listeners map[string]*listener
	clusters  map[string]*cluster
}

// WithVersion names the initial configuration's version (shown by
// /config_dump; a control plane's updates bring their own).
func WithVersion(v string) Option { return func(p *Proxy) { p.version = v } }

// AwaitConfig makes a proxy created with no listeners or clusters wait for
// its first Update before it reports ready.
func AwaitConfig() Option { return func(p *Proxy) { p.awaiting = true } }

// New compiles cfg (which must be normalized and valid, as ParseConfig
// returns it) into a Proxy. Nothing listens until Run.
func New(cfg Config, opts ...Option) (*Proxy, error) {
	cfg.Normalize()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Proxy{node: cfg.Node, admin: cfg.Admin, mode: cfg.Mode, log: nopLogger{}, drain: DefaultDrainTimeout, fastHTTP: defaultFastHTTP,
		accessLog: io.Discard, stats: map[string]*listenerStats{}, bound: map[string]*boundListener{}, internal: newInternals()}
	for _, o := range opts {
		o(p)
	}
	p.metrics = newMetrics(cfg.Mode)
	st, _, err := p.compile(cfg, nil, p.version, p.source)
	if err != nil {
		return nil, err
	}
	p.state.Store(st)
	return p, nil
}

// compile builds a state from cfg, reusing prev's clusters whose
// configuration is the same but for their endpoints (their connection
// pools, circuit breakers and outlier state carry over); it returns the
// endpoint changes to make when the state takes effect. It has no other
// side effect, so a configuration that fails leaves the proxy as it was.
func (p *Proxy) compile(cfg Config, prev *state, version string, source json.RawMessage) (*state, func(), error) {
	st := &state{version: version, source: source, cfg: cfg, listeners: map[string]*listener{}, clusters: map[string]*cluster{}}
	var reuse []func()
	for _, c := range cfg.Clusters {
		if prev != nil {
			if old := prev.clusters[c.Name]; old != nil && old.sameSettings(c) {
				st.clusters[c.Name] = old
				reuse = append(reuse, func() { old.setEndpoints(c.Endpoints) })
				continue
			}
		}
		cl, err := newCluster(c, p.internal)
		if err != nil {
			return nil, nil, err
		}
		st.clusters[c.Name] = cl
	}
	for _, l := range cfg.Listeners {
		ln, err := newListener(l, st.clusters, p.listenerStats(l.Name))
		if err != nil {
			return nil, nil, err
		}
		ln.metrics = p.metrics
		if l.AccessLog {
			ln.accessLog = accessLogger(p.accessLog, l.Name)
		}
		st.listeners[l.Name] = ln
	}
	return st, func() {
		for _, f := range reuse {
			f()
		}
	}, nil
}

// listenerStats returns the counters of the listener called name, which
// outlive the listener's configurations.
func (p *Proxy) listenerStats(name string) *listenerStats {
	p.statsMu.Lock()
	defer p.statsMu.Unlock()
	if s := p.stats[name]; s != nil {
		return s
	}
	s := &listenerStats{}
	p.stats[name] = s
	return s
}

// Ready reports whether every listener is accepting connections.
func (p *Proxy) Ready() bool { return p.ready.Load() }

// Version returns the version of the configuration in force.
func (p *Proxy) Version() string { return p.state.Load().version }

// Update replaces the configuration with cfg, named version; source is
// what it was compiled from, for /config_dump. A configuration that does
// not compile, or a listener that cannot bind, is an error and changes
// nothing. cfg's Node, Admin and Mode are the proxy's own and are ignored.
func (p *Proxy) Update(cfg Config, version string, source json.RawMessage) error {
	cfg.Node, cfg.Admin, cfg.Mode = p.node, p.admin, p.mode
	cfg.Normalize()
	if err := cfg.Validate(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	prev := p.state.Load()
	st, endpoints, err := p.compile(cfg, prev, version, source)
	if err != nil {
		return err
	}
	if !p.running {
		endpoints()
		p.state.Store(st)
		p.awaiting = false
		p.retire(prev, st)
		return nil
	}
	commit, err := p.bindLocked(st)
	if err != nil {
		return err
	}
	endpoints()
	p.state.Store(st)
	commit()
	p.updates++
	p.awaiting = false
	p.ready.Store(true)
	p.retire(prev, st)
	return nil
}

// retire closes the idle connections of prev's clusters that st no longer
// has, once their requests in flight are done.
func (p *Proxy) retire(prev, st *state) {
	if prev == nil {
		return
	}
	for name, c := range prev.clusters {
		if st.clusters[name] == c {
			continue
		}
		go func() {
			deadline := time.Now().Add(p.drain)
			for c.active.Load() > 0 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			c.closeIdle()
		}()
	}
}

// Run binds every listener (failing fast if one cannot bind), serves until
// ctx ends, then drains in-flight requests for up to the drain timeout.
func (p *Proxy) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.running {
		p.mu.Unlock()
		return errors.New("proxy is already running")
	}
	p.errc = make(chan error, 1)
	p.running = true
	// The admin socket first: bindLocked's sockets are closed by bindLocked
	// itself when it fails, and are in service once it succeeds.
	var err error
	if p.admin != "" {
		if p.adminLn, err = listenSocket(p.admin, p.fail); err != nil {
			err = fmt.Errorf("admin listener: %w", err)
		}
	}
	var commit func()
	if err == nil {
		if commit, err = p.bindLocked(p.state.Load()); err != nil && p.adminLn != nil {
			p.adminLn.close()
			p.adminLn = nil
		}
	}
	if err != nil {
		p.running = false
		p.mu.Unlock()
		return err
	}
	commit()
	var admin *http.Server
	if p.adminLn != nil {
		admin = &http.Server{Handler: p.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = admin.Serve(p.adminLn.serveWith()) }()
	}
	p.ready.Store(!p.awaiting)
	n := len(p.bound)
	p.mu.Unlock()
	p.log.Logf("proxy %s ready: %d listeners", p.node, n)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-p.errc:
	}
	p.ready.Store(false)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running = false
	dctx, cancel := context.WithTimeout(context.Background(), p.drain)
	defer cancel()
	var wg sync.WaitGroup
	for name, b := range p.bound {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.stopAndClose(dctx)
		}()
		delete(p.bound, name)
	}
	if admin != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if admin.Shutdown(dctx) != nil {
				admin.Close()
			}
			p.adminLn.close()
		}()
	}
	wg.Wait()
	st := p.state.Load()
	for _, c := range st.clusters {
		c.closeIdle()
	}
	p.statsMu.Lock()
	defer p.statsMu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(p.stats)) {
		s := p.stats[name].snapshot()
		p.log.Logf("listener %s: %d requests (2xx %d, 4xx %d, 5xx %d), %d connections",
			name, s.Requests, s.Responses2xx, s.Responses4xx, s.Responses5xx, s.Connections)
	}
	p.log.Logf("proxy %s stopped after %d configuration updates", p.node, p.updates)
	return runErr
}

// fail ends Run with a listener's error.
func (p *Proxy) fail(err error) {
	select {
	case p.errc <- err:
	default:
	}
}

// AdminListener is the name Addr knows the admin listener by.
const AdminListener = "admin"

// Addr returns the address a listener is bound to ("" before Run binds it),
// which tells the port when the configuration asked for port 0.
func (p *Proxy) Addr(listener string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if listener == AdminListener {
		if p.adminLn == nil {
			return ""
		}
		return p.adminLn.addr()
	}
	if b := p.bound[listener]; b != nil {
		return b.sock.addr()
	}
	return ""
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
	// Refused counts connections closed on accept for their source
	// (Listener.SourceRanges).
	Refused     uint64 `json:"refused"`
	Denied      uint64 `json:"denied"`
	FaultDelays uint64 `json:"faultDelays"`
	FaultAborts uint64 `json:"faultAborts"`
}

// Stats returns the current counters.
func (p *Proxy) Stats() Stats {
	s := Stats{Listeners: map[string]ListenerStats{}, Clusters: map[string]ClusterStats{}}
	p.statsMu.Lock()
	for name, l := range p.stats {
		s.Listeners[name] = l.snapshot()
	}
	p.statsMu.Unlock()
	for name, c := range p.state.Load().clusters {
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
		st := p.state.Load()
		writeJSON(w, struct {
			Version  string          `json:"version"`
			Source   json.RawMessage `json:"source,omitempty"`
			Compiled Config          `json:"compiled"`
		}{st.version, st.source, st.cfg})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
