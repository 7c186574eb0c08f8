package proxy

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// endpoint is one upstream address and what the cluster knows of it.
type endpoint struct {
	addr   string
	active atomic.Int64
	// ewma is the latency EWMA in nanoseconds (float64 bits), last when
	// it was last fed (unix nanoseconds).
	ewma atomic.Uint64
	last atomic.Int64

	mu           sync.Mutex
	consec5xx    int
	consecGW     int
	ejections    int
	ejectedUntil time.Time
}

// maxEjectionTime caps an endpoint's ejection, as Envoy's default does.
const maxEjectionTime = 300 * time.Second

// ewmaAlpha weighs the newest latency sample.
const ewmaAlpha = 0.3

// ewmaDecay is how fast an endpoint's latency is forgotten while it is
// not used (as Finagle's and Linkerd's peak EWMA decay theirs, over 10 s):
// an endpoint least request stopped picking because it was slow is tried
// again once its decayed latency is below the others', instead of never.
// 3 s: one slow first answer (a cold pod) costs it seconds of traffic,
// not a minute, and a pod 200 ms slow is tried again after about 20 s.
const ewmaDecay = 3 * time.Second

// decayed is a latency last measured at last (unix nanoseconds), decayed
// to now.
func decayed(lat float64, last int64, now time.Time) float64 {
	if since := now.UnixNano() - last; lat > 0 && since > 0 {
		return lat * math.Exp(-float64(since)/float64(ewmaDecay))
	}
	return lat
}

func (e *endpoint) observe(d time.Duration) {
	now := time.Now()
	defer e.last.Store(now.UnixNano())
	for {
		old := e.ewma.Load()
		// The sample blends with what is left of the last estimate.
		prev := decayed(math.Float64frombits(old), e.last.Load(), now)
		next := float64(d)
		if prev != 0 {
			next = ewmaAlpha*float64(d) + (1-ewmaAlpha)*prev
		}
		if e.ewma.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}

// observeOutcome feeds the latency EWMA: a failure counts as slow (twice the
// current average, at least a second's worth of a fast answer), so that an
// endpoint failing fast does not look like the best one to least-request.
func (e *endpoint) observeOutcome(d time.Duration, o outcome) {
	if o == outcomeOK {
		e.observe(d)
		return
	}
	penalty := 2 * time.Duration(math.Float64frombits(e.ewma.Load()))
	e.observe(max(penalty, 10*time.Millisecond, d))
}

// score is what least-request minimizes: queue length weighted by latency,
// the latency decaying with the time since it was last measured.
func (e *endpoint) score(now time.Time) float64 {
	lat := decayed(math.Float64frombits(e.ewma.Load()), e.last.Load(), now)
	if lat < 1 {
		lat = 1 // unmeasured endpoints compete on active requests alone
	}
	return float64(e.active.Load()+1) * lat
}

func (e *endpoint) ejected(now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return now.Before(e.ejectedUntil)
}

// outcome of one attempt, for outlier detection.
type outcome int

const (
	outcomeOK outcome = iota
	outcome5xx
	outcomeGatewayFailure // connect failure, reset, 502, 503, 504
)

// record counts an attempt's outcome and ejects the endpoint when it has
// failed too often in a row, unless that would eject more than the allowed
// share of the cluster.
func (c *cluster) record(e *endpoint, o outcome, now time.Time) {
	od := c.cfg.Outlier
	if od == nil {
		return
	}
	e.mu.Lock()
	switch o {
	case outcomeOK:
		e.consec5xx, e.consecGW = 0, 0
		// A healthy answer after the ejection ended earns back one step
		// of the ejection multiplier (Envoy decrements it over intervals).
		if e.ejections > 0 && now.After(e.ejectedUntil.Add(od.BaseEjectionTime.D())) {
			e.ejections--
		}
		e.mu.Unlock()
		return
	case outcomeGatewayFailure:
		e.consecGW++
		e.consec5xx++
	case outcome5xx:
		e.consec5xx++
		e.consecGW = 0
	}
	trip := (od.Consecutive5xx > 0 && e.consec5xx >= od.Consecutive5xx) ||
		(od.ConsecutiveGatewayFailure > 0 && e.consecGW >= od.ConsecutiveGatewayFailure)
	e.mu.Unlock()
	if !trip {
		return
	}
	// Envoy's max_ejection_percent, which ejects at least one host
	// whatever the percentage.
	ejected := 0
	eps := c.endpoints()
	for _, other := range eps {
		if other != e && other.ejected(now) {
			ejected++
		}
	}
	if ejected > 0 && (ejected+1)*100 > od.MaxEjectionPercent*len(eps) {
		return
	}
	e.mu.Lock()
	// The ejection time grows with each ejection, up to Envoy's default
	// max_ejection_time of 300s, and the count decays while the endpoint
	// stays healthy (see the reset on success below).
	e.ejections++
	e.ejectedUntil = now.Add(min(time.Duration(e.ejections)*od.BaseEjectionTime.D(), maxEjectionTime))
	e.consec5xx, e.consecGW = 0, 0
	e.mu.Unlock()
	c.stats.ejections.Add(1)
}

// pick chooses the endpoint for the next attempt among those not ejected
// (all of them when every one is ejected: Envoy's panic mode), skipping
// avoid when there is another choice (retries go elsewhere).
func (c *cluster) pick(avoid *endpoint) *endpoint {
	eps := c.endpoints()
	switch len(eps) {
	case 0:
		return nil
	case 1:
		return eps[0]
	}
	now := time.Now()
	healthy := make([]*endpoint, 0, len(eps))
	for _, e := range eps {
		if e != avoid && !e.ejected(now) {
			healthy = append(healthy, e)
		}
	}
	if len(healthy) == 0 {
		healthy = eps
	}
	if c.cfg.LBPolicy == LBLeastRequest && len(healthy) > 1 {
		a := healthy[rand.IntN(len(healthy))]
		b := healthy[rand.IntN(len(healthy)-1)]
		if b == a {
			b = healthy[len(healthy)-1]
		}
		if b.score(now) < a.score(now) {
			return b
		}
		return a
	}
	return healthy[(c.next.Add(1)-1)%uint64(len(healthy))]
}

// admit applies the circuit breakers to a new request: false means the
// cluster is at its limit and the request must fail fast (503).
func (c *cluster) admit() bool {
	cb := c.cfg.CircuitBreakers
	n := c.active.Add(1)
	// HTTP/1.1 holds one connection per active request: requests beyond
	// max_connections wait for one (pending).
	limit := min(int64(cb.MaxRequests), int64(cb.MaxConnections)+int64(cb.MaxPendingRequests))
	if c.cfg.HTTP2 {
		limit = int64(cb.MaxRequests)
	}
	if n > limit {
		c.active.Add(-1)
		c.stats.overflow.Add(1)
		return false
	}
	return true
}

func (c *cluster) release() { c.active.Add(-1) }

// allowRetry applies the retry budget: retries in flight may be at most
// RetryBudgetPercent of active requests, but at least MinRetryConcurrency.
func (c *cluster) allowRetry() bool {
	cb := c.cfg.CircuitBreakers
	limit := max(int64(cb.MinRetryConcurrency), int64(cb.RetryBudgetPercent/100*float64(c.active.Load())))
	if c.retries.Add(1) > limit {
		c.retries.Add(-1)
		c.stats.retryOverflow.Add(1)
		return false
	}
	return true
}

func (c *cluster) retryDone() { c.retries.Add(-1) }
