package workload

import (
	"context"
	"sync"
	"time"

	"fortio.org/fortio/periodic"
	"fortio.org/fortio/stats"
)

// coLatency measures latency as wrk2 does, corrected for coordinated
// omission: from each request's intended send time on the fixed-rate
// schedule, not from when it was actually sent. A connection that stalls
// delays its next requests; fortio's own latency starts when each of them is
// finally sent and so hides the stall, this one charges it to every request
// that should have gone out meanwhile.
//
// The schedule is fortio's own (periodic.runOne in duration mode): thread t
// makes n = floor(qps*duration)/threads calls, call i intended at
// start_t + (i + i/(n-1)) / (qps/threads), where start_t is the thread's
// first call (fortio does not sleep before it).
type coLatency struct {
	perThreadQPS float64
	n            int64

	mu      sync.Mutex
	threads map[periodic.ThreadID]*coThread
}

type coThread struct {
	start time.Time
	h     *stats.Histogram
}

var _ periodic.AccessLogger = (*coLatency)(nil)

func newCOLatency(qps float64, d time.Duration, threads int) *coLatency {
	total := int64(qps * d.Seconds())
	// fortio lowers the thread count when there are fewer than 2 calls each.
	if int64(2*threads) > total {
		threads = max(int(total/2), 1)
	}
	return &coLatency{perThreadQPS: qps / float64(threads), n: total / int64(threads), threads: map[periodic.ThreadID]*coThread{}}
}

func (c *coLatency) thread(id periodic.ThreadID) *coThread {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.threads[id]
	if t == nil {
		t = &coThread{h: stats.NewHistogram(0, Resolution)}
		c.threads[id] = t
	}
	return t
}

// Start is called before each request.
func (c *coLatency) Start(ctx context.Context, id periodic.ThreadID, iter int64, start time.Time) context.Context {
	if iter == 0 {
		c.thread(id).start = start
	}
	return ctx
}

// Report is called after each request, on the thread's own goroutine.
func (c *coLatency) Report(_ context.Context, id periodic.ThreadID, iter int64, start time.Time, latency float64, _ bool, _ string) {
	t := c.thread(id)
	target := float64(iter)
	if c.n > 1 {
		target += float64(iter) / float64(c.n-1)
	}
	intended := t.start.Add(time.Duration(target / c.perThreadQPS * float64(time.Second)))
	late := start.Sub(intended).Seconds()
	t.h.Record(latency + max(late, 0))
}

// Info names the logger in fortio's output.
func (c *coLatency) Info() string { return "coordinated-omission-corrected latency" }

// result merges the threads' histograms.
func (c *coLatency) result() *stats.HistogramData {
	all := stats.NewHistogram(0, Resolution)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.threads {
		all.Transfer(t.h)
	}
	return all.Export().CalcPercentiles(Percentiles)
}
