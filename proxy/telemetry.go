package proxy

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// exchange is what the proxy records of one request, for metrics and the
// access log.
type exchange struct {
	start                   time.Time
	method, path, authority string
	source, cluster, trace  string
	code                    int
	// grpcStatus is a gRPC answer's grpc-status ("" for other answers).
	grpcStatus string
}

func (l *listener) observe(ex *exchange) {
	d := time.Since(ex.start)
	if l.metrics != nil {
		l.metrics.record(l, ex, d)
	}
	if l.accessLog != nil {
		// A copy: the logger is a closure the compiler cannot see into,
		// and handing it ex itself would put every request's exchange on
		// the heap, logged or not.
		e := *ex
		l.accessLog(&e)
	}
}

// latencyBuckets are the request-duration histogram's upper bounds, in
// seconds: fine below a millisecond, where proxy hops live.
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

type seriesKey struct {
	listener, direction, source, destination string
	code                                     int
	grpcStatus                               string
}

type series struct {
	count   atomic.Uint64
	sumNs   atomic.Uint64
	buckets []atomic.Uint64
}

// metrics holds the proxy's request counters and latency histograms by
// listener, direction, source and destination workload, and code. Lookups
// take a read lock on a map keyed by a comparable struct, which does not
// allocate; a new series takes the write lock once.
type metrics struct {
	mode string
	mu   sync.RWMutex
	m    map[seriesKey]*series
}

func newMetrics(mode string) *metrics {
	return &metrics{mode: mode, m: map[seriesKey]*series{}}
}

func (m *metrics) record(l *listener, ex *exchange, d time.Duration) {
	src := ex.source
	if src == "" {
		src = "unknown"
	}
	k := seriesKey{listener: l.cfg.Name, direction: string(l.cfg.Direction), source: src, destination: ex.cluster, code: ex.code, grpcStatus: ex.grpcStatus}
	m.mu.RLock()
	s := m.m[k]
	m.mu.RUnlock()
	if s == nil {
		m.mu.Lock()
		if s = m.m[k]; s == nil {
			s = &series{buckets: make([]atomic.Uint64, len(latencyBuckets))}
			m.m[k] = s
		}
		m.mu.Unlock()
	}
	s.count.Add(1)
	s.sumNs.Add(uint64(d))
	sec := d.Seconds()
	for i, b := range latencyBuckets {
		if sec <= b {
			s.buckets[i].Add(1)
			break
		}
	}
}

// write renders the Prometheus text exposition format.
func (m *metrics) write(w io.Writer) {
	m.mu.RLock()
	keys := make([]seriesKey, 0, len(m.m))
	for k := range m.m {
		keys = append(keys, k)
	}
	m.mu.RUnlock()
	sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
	labels := func(k seriesKey) string {
		grpc := ""
		if k.grpcStatus != "" {
			// Istio's label name; only on gRPC answers.
			grpc = fmt.Sprintf(`,grpc_response_status=%q`, k.grpcStatus)
		}
		return fmt.Sprintf(`listener=%q,direction=%q,source_workload=%q,destination=%q,response_code="%d"%s,mode=%q`,
			k.listener, k.direction, k.source, k.destination, k.code, grpc, m.mode)
	}
	fmt.Fprintln(w, "# HELP meshbench_requests_total Requests handled by the proxy.")
	fmt.Fprintln(w, "# TYPE meshbench_requests_total counter")
	for _, k := range keys {
		fmt.Fprintf(w, "meshbench_requests_total{%s} %d\n", labels(k), m.get(k).count.Load())
	}
	fmt.Fprintln(w, "# HELP meshbench_request_duration_seconds Time from request received to response handed back (headers, or error).")
	fmt.Fprintln(w, "# TYPE meshbench_request_duration_seconds histogram")
	for _, k := range keys {
		s := m.get(k)
		var cum uint64
		for i, b := range latencyBuckets {
			cum += s.buckets[i].Load()
			fmt.Fprintf(w, "meshbench_request_duration_seconds_bucket{%s,le=\"%s\"} %d\n", labels(k), strconv.FormatFloat(b, 'g', -1, 64), cum)
		}
		fmt.Fprintf(w, "meshbench_request_duration_seconds_bucket{%s,le=\"+Inf\"} %d\n", labels(k), s.count.Load())
		fmt.Fprintf(w, "meshbench_request_duration_seconds_sum{%s} %g\n", labels(k), float64(s.sumNs.Load())/1e9)
		fmt.Fprintf(w, "meshbench_request_duration_seconds_count{%s} %d\n", labels(k), s.count.Load())
	}
}

func (m *metrics) get(k seriesKey) *series {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.m[k]
}

// accessLogger writes one JSON object per request.
func accessLogger(w io.Writer, listener string) func(*exchange) {
	var mu sync.Mutex
	return func(ex *exchange) {
		line, _ := json.Marshal(map[string]any{
			"time": ex.start.UTC().Format(time.RFC3339Nano), "listener": listener, "method": ex.method,
			"path": ex.path, "authority": ex.authority, "code": ex.code, "source": ex.source,
			"cluster": ex.cluster, "traceparent": ex.trace,
			"duration_ms": float64(time.Since(ex.start).Microseconds()) / 1000,
		})
		mu.Lock()
		_, _ = w.Write(append(line, '\n'))
		mu.Unlock()
	}
}

// ensureTraceparent continues a W3C trace context: a valid traceparent
// keeps its trace id and flags and gets this hop's new span id; a missing or
// malformed one is replaced by a new sampled trace. It returns the header.
func ensureTraceparent(h http.Header) string {
	buf, fresh := nextTraceparent(h.Get("Traceparent"))
	if fresh {
		h.Del("Tracestate") // it belonged to a trace we did not continue
	}
	v := string(buf[:])
	h["Traceparent"] = []string{v}
	return v
}

// nextTraceparent is this hop's traceparent after prev (a request's, or
// ""), and whether it starts a new trace.
func nextTraceparent(prev string) (buf [55]byte, fresh bool) {
	if validTraceparent(prev) {
		copy(buf[:], prev)
	} else {
		fresh = true
		copy(buf[:], "00-")
		var trace [16]byte
		putRandom(trace[:])
		hex.Encode(buf[3:35], trace[:])
		copy(buf[35:], "-0000000000000000-01")
	}
	var span [8]byte
	putRandom(span[:])
	hex.Encode(buf[36:52], span[:])
	return buf, fresh
}

func putRandom(b []byte) {
	for i := 0; i < len(b); i += 8 {
		v := rand.Uint64() | 1 // never all zeros, which W3C forbids
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
}

// validTraceparent checks version 00's shape: 00-<32 hex>-<16 hex>-<2 hex>,
// with ids not all zeros.
func validTraceparent(v string) bool {
	if len(v) != 55 || v[:3] != "00-" || v[35] != '-' || v[52] != '-' {
		return false
	}
	for i, c := range v {
		if i == 2 || i == 35 || i == 52 {
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return v[3:35] != "00000000000000000000000000000000" && v[36:52] != "0000000000000000"
}
