package controlplane

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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshbench/meshbench/proxy/xds"
)

// Plane is a running control plane: a model, the policy in force, and
// the server that serves what they compile to.
type Plane struct {
	srv   *Server
	model *Model
	base  map[string]*xds.Bundle
	ready atomic.Bool

	mutation string

	scrapeOnce sync.Once
	scraper    *http.Client // of the Traffic Metrics API's scrapes

	mu       sync.Mutex // serializes compiles
	policies []json.RawMessage
	marks    marks // the benchmark's synthetic changes so far
	history  []Change
}

// Change is one configuration the plane put in force.
type Change struct {
	Version string    `json:"version"`
	At      time.Time `json:"at"`
	// Policies is how many policy objects were in force.
	Policies int `json:"policies"`
	// What changed: "policies", or a benchmark change's kind.
	What string `json:"what,omitempty"`
}

// PlaneOption configures a Plane.
type PlaneOption func(*Plane) error

// WithMutation makes the plane break one translation on purpose (one of
// Mutations): a test-only switch, for the conformance suite's check of
// itself.
func WithMutation(m string) PlaneOption {
	return func(p *Plane) error {
		if !slices.Contains(Mutations, m) {
			return fmt.Errorf("unknown mutation %q (%s)", m, strings.Join(Mutations, ", "))
		}
		p.mutation = m
		return nil
	}
}

// NewPlane compiles the model with no policy and puts it in force.
func NewPlane(ctx context.Context, srv *Server, model *Model, base map[string]*xds.Bundle, opts ...PlaneOption) (*Plane, error) {
	p := &Plane{srv: srv, model: model, base: base}
	for _, o := range opts {
		if err := o(p); err != nil {
			return nil, err
		}
	}
	if err := p.apply(ctx, nil); err != nil {
		return nil, err
	}
	return p, nil
}

// apply compiles the model with policies and serves the result.
func (p *Plane) apply(ctx context.Context, policies []json.RawMessage) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.serve(ctx, policies, p.marks, "policies")
}

// serve compiles the model with policies, makes the synthetic changes,
// and puts the result in force. The caller holds p.mu.
func (p *Plane) serve(ctx context.Context, policies []json.RawMessage, m marks, what string) error {
	bundles, err := compileWith(p.model, p.base, policies, p.mutation)
	if err != nil {
		return err
	}
	if bundles, err = m.apply(bundles); err != nil {
		return err
	}
	v, err := p.srv.Set(ctx, bundles)
	if err != nil {
		return err
	}
	p.policies, p.marks = policies, m
	p.history = append(p.history, Change{Version: v, At: time.Now(), Policies: len(policies), What: what})
	return nil
}

// Bench makes one synthetic change of kind (one of ChangeKinds) to every
// node's configuration and returns the version it is in.
func (p *Plane) Bench(ctx context.Context, kind string) (string, error) {
	if !slices.Contains(ChangeKinds, kind) {
		return "", fmt.Errorf("unknown change %q (%s)", kind, strings.Join(ChangeKinds, ", "))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	m := maps.Clone(p.marks)
	if m == nil {
		m = marks{}
	}
	m[kind]++
	if err := p.serve(ctx, p.policies, m, kind); err != nil {
		return "", err
	}
	return p.srv.Version(), nil
}

// SetReady says the plane's xDS listener is serving.
func (p *Plane) SetReady() { p.ready.Store(true) }

// Status is what /status reports.
type Status struct {
	Version string                `json:"version"`
	Changes []Change              `json:"changes"`
	Nodes   map[string]NodeStatus `json:"nodes"`
}

// Status returns the configurations put in force and every node's view.
func (p *Plane) Status() Status {
	p.mu.Lock()
	changes := append([]Change(nil), p.history...)
	p.mu.Unlock()
	return Status{Version: p.srv.Version(), Changes: changes, Nodes: p.srv.Status()}
}

// Handler serves the plane's admin API: GET /ready, GET /status (every
// node's ACKed versions and NACKs), PUT /policies (a JSON array of
// policy objects: the whole policy in force from now on), POST
// /bench/change?kind=K (a synthetic change, see ChangeKinds), GET
// /propagation (how far the version in force has reached), SMI's Traffic
// Metrics API (GET /apis/metrics.smi-spec.io/v1alpha1/namespaces/default/
// deployments/NAME[/edges]) and Go's profiles under /debug/pprof/.
func (p *Plane) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if !p.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, p.Status())
	})
	mux.HandleFunc("POST /bench/change", func(w http.ResponseWriter, r *http.Request) {
		v, err := p.Bench(r.Context(), r.URL.Query().Get("kind"))
		if err != nil {
			http.Error(w, "bench change: "+err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, map[string]string{"version": v})
	})
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /propagation", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, p.srv.Propagation())
	})
	// SMI's Traffic Metrics API, as its aggregated API server serves it.
	const metricsAPI = "/apis/metrics.smi-spec.io/v1alpha1/namespaces/{ns}/deployments/{name}"
	metrics := func(get func(context.Context, string) (any, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if ns := r.PathValue("ns"); ns != MetricsNamespace {
				http.Error(w, fmt.Sprintf("namespace %q: the mesh's workloads are in %q", ns, MetricsNamespace), http.StatusNotFound)
				return
			}
			v, err := get(r.Context(), r.PathValue("name"))
			switch {
			case errors.Is(err, errUnknownService), errors.Is(err, ErrNoMetrics):
				http.Error(w, "traffic metrics: "+err.Error(), http.StatusNotFound)
				return
			case err != nil: // a proxy's metrics could not be read
				http.Error(w, "traffic metrics: "+err.Error(), http.StatusBadGateway)
				return
			}
			writeJSON(w, v)
		}
	}
	mux.HandleFunc("GET "+metricsAPI, metrics(func(ctx context.Context, name string) (any, error) { return p.trafficMetrics(ctx, name) }))
	mux.HandleFunc("GET "+metricsAPI+"/edges", metrics(func(ctx context.Context, name string) (any, error) { return p.trafficEdges(ctx, name) }))
	mux.HandleFunc("PUT /policies", func(w http.ResponseWriter, r *http.Request) {
		var objs []json.RawMessage
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<20)).Decode(&objs); err != nil {
			http.Error(w, "policies: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := p.apply(r.Context(), objs); err != nil {
			http.Error(w, fmt.Sprintf("policies: %v", err), http.StatusUnprocessableEntity)
			return
		}
		writeJSON(w, map[string]string{"version": p.srv.Version()})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
