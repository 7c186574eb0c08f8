package workload

import (
	"context"
	"sync"
	"time"

	"fortio.org/fortio/periodic"
	"fortio.org/fortio/stats"

	"github.com/meshbench/meshbench/runner/results"
)

// coLatency records every measured request's latency twice, in
// meshbench's own fine histograms (hist.go): as fortio measured it, from
// when the request was sent, and as wrk2 does, corrected for coordinated
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

	mu     sync.Mutex
	starts map[periodic.ThreadID]time.Time
	direct *Histogram // from the actual send time, as fortio's own
	coHist *Histogram // from the intended send time
	series seconds    // per second of the window, by send time
}

var _ periodic.AccessLogger = (*coLatency)(nil)

func newCOLatency(qps float64, d time.Duration, threads int) *coLatency {
	total := int64(qps * d.Seconds())
	// fortio lowers the thread count when there are fewer than 2 calls each.
	if int64(2*threads) > total {
		threads = max(int(total/2), 1)
	}
	return &coLatency{
		perThreadQPS: qps / float64(threads), n: total / int64(threads),
		starts: map[periodic.ThreadID]time.Time{}, direct: NewHistogram(), coHist: NewHistogram(),
		series: seconds{origin: time.Now()},
	}
}

// Start is called before each request.
func (c *coLatency) Start(ctx context.Context, id periodic.ThreadID, iter int64, start time.Time) context.Context {
	if iter == 0 {
		c.mu.Lock()
		c.starts[id] = start
		c.mu.Unlock()
	}
	return ctx
}

// Report is called after each request, on the thread's own goroutine.
func (c *coLatency) Report(_ context.Context, id periodic.ThreadID, iter int64, start time.Time, latency float64, ok bool, details string) {
	target := float64(iter)
	if c.n > 1 {
		target += float64(iter) / float64(c.n-1)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	intended := c.starts[id].Add(time.Duration(target / c.perThreadQPS * float64(time.Second)))
	late := start.Sub(intended).Seconds()
	c.direct.Record(latency)
	c.coHist.Record(latency + max(late, 0))
	c.series.record(start, latency, ok, details)
}

// Info names the logger in fortio's output.
func (c *coLatency) Info() string { return "coordinated-omission-corrected latency" }

// result exports the histograms (latency as sent, and corrected) and
// the per-second series.
func (c *coLatency) result() (direct, corrected *stats.HistogramData, series []results.Second) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.direct.Export(), c.coHist.Export(), c.series.series()
}
