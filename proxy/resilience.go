package proxy

import (
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// endpoint is one upstream address and what the cluster knows of it.
type endpoint struct {
	addr string
	// internal, when set, is the internal listener the endpoint is (addr
	// its id).
	internal string
	active   atomic.Int64
	// fast is the endpoint's connection pool on the fasthttp engine.
	fast atomic.Pointer[fasthttp.HostClient]
	// lat is the latency estimate, kept with when it was last fed.
	lat latency

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

// ewmaDecay is how fast an endpoint's latency estimate is forgotten
// while it is not fed: an endpoint least request stopped picking because
// it was slow is tried again once its decayed estimate is below the
// others', instead of never (Finagle's and Linkerd's peak EWMA decay theirs
// likewise, over 10 s). 3 s: one slow first answer costs a pod seconds
// of traffic, not a minute, and a pod 200 ms slow is tried again after
// about 20 s.
const ewmaDecay = 3 * time.Second

// latency is an endpoint's latency estimate (nanoseconds): an EWMA of its
// answers that decays with the time since it was last fed. Its value and
// time change together, under its lock.
type latency struct {
	mu   sync.Mutex
	ewma float64
	last time.Time
}

// left is the weight the estimate keeps at now, from 1 (just fed) to 0.
func (l *latency) left(now time.Time) float64 {
	return math.Exp(-float64(now.Sub(l.last)) / float64(ewmaDecay))
}

// observe feeds a sample: blended with ewmaAlpha into what is left of the
// estimate, and taken whole after a long silence (the estimate then has
// little left to say).
func (l *latency) observe(d time.Duration, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ewma == 0 {
		l.ewma = float64(d)
	} else {
		w := min(l.left(now), 1)
		alpha := max(ewmaAlpha, 1-w)
		l.ewma = alpha*float64(d) + (1-alpha)*l.ewma*w
	}
	l.last = now
}

// read is the estimate at now: decayed, or as last fed when decay is
// false.
func (l *latency) read(now time.Time, decay bool) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if decay && l.ewma > 0 {
		return l.ewma * min(l.left(now), 1)
	}
	return l.ewma
}

func (e *endpoint) observe(d time.Duration) { e.lat.observe(d, time.Now()) }

// observeOutcome feeds the latency EWMA: a failure counts as slow (twice the
// current average, at least a second's worth of a fast answer), so that an
// endpoint failing fast does not look like the best one to least-request.
func (e *endpoint) observeOutcome(d time.Duration, o outcome) {
	if o == outcomeOK {
		e.observe(d)
		return
	}
	now := time.Now()
	penalty := 2 * time.Duration(e.lat.read(now, true))
	e.lat.observe(max(penalty, 10*time.Millisecond, d), now)
}

// score is what least-request minimizes: queue length weighted by latency,
// the latency decaying with the time since it was last measured while
// nothing is in flight to it (a silent endpoint's requests never answer:
// its estimate must not decay into looking fast while they wait).
func (e *endpoint) score(now time.Time) float64 {
	active := e.active.Load()
	lat := e.lat.read(now, active == 0)
	if lat < 1 {
		lat = 1 // unmeasured endpoints compete on active requests alone
	}
	return float64(active+1) * lat
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
