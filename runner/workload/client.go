package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"fortio.org/fortio/fhttp"
	"fortio.org/fortio/periodic"
	"fortio.org/fortio/stats"
	"google.golang.org/grpc"

	"github.com/meshbench/meshbench/runner/results"
)

// Resolution is the latency histogram's bucket resolution in seconds:
// 10 µs. fortio's default of 1 ms cannot resolve a sub-millisecond proxy hop.
const Resolution = 10e-6

// Percentiles are computed for every run.
var Percentiles = []float64{50, 90, 99, 99.9}

// LoadOptions describe one load run of the client.
type LoadOptions struct {
	URL         string
	Host        string
	QPS         float64
	Connections int
	Duration    time.Duration
	Warmup      time.Duration
	// RequestSize, when > 0, sends POST requests with a body of that size.
	RequestSize int
	// Log receives fortio's own text output.
	Log io.Writer
	// Transport, when set, makes each connection's requests go through the
	// RoundTripper it returns (the proxyless mode's in-process data plane),
	// with fortio's standard client instead of its fast one.
	Transport func() (http.RoundTripper, error)
	// Protocol is the load's protocol (scenarios.Protocols; empty is
	// http): http2 is cleartext HTTP/2 with prior knowledge, grpc pings
	// fortio's ping service and tcp writes payloads to be echoed, each to
	// the URL's host:port.
	Protocol string
	// GRPCDial, when set, opens each gRPC load connection (the
	// proxyless-grpc mode's xDS client).
	GRPCDial func() (*grpc.ClientConn, error)
}

// requestTimeout bounds one request of the load.
const requestTimeout = 5 * time.Second

// hostPort is the host:port of a load URL.
func hostPort(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Port() == "" {
		return "", fmt.Errorf("%q: %w", raw, errNoPort)
	}
	return u.Host, nil
}

// Event is one line of the client's event stream, which tells the runner
// when the measured window starts and ends.
type Event struct {
	Event string    `json:"event"`
	Time  time.Time `json:"time"`
	// CPUSeconds is the client's own user+system CPU time so far, so the
	// runner can charge the load generator exactly its measured window.
	CPUSeconds float64 `json:"cpuSeconds,omitempty"`
	Error      string  `json:"error,omitempty"`
}

// Event names, in the order they are emitted.
const (
	EventWarmup       = "warmup"
	EventMeasureStart = "measure-start"
	EventMeasureEnd   = "measure-end"
)

// RunLoad drives a warm-up (whose results are discarded) and then the
// measured run, emitting events to events, and returns the measured run's
// fortio result with its coordinated-omission-corrected latency. Cancelling ctx stops the run early; the partial result is
// returned with ctx's error.
func RunLoad(ctx context.Context, o LoadOptions, events io.Writer) (*Result, error) {
	emit := func(name string) {
		b, _ := json.Marshal(Event{Event: name, Time: time.Now().UTC(), CPUSeconds: selfCPU()})
		_, _ = events.Write(append(b, '\n'))
	}
	if o.Warmup > 0 {
		emit(EventWarmup)
		if _, err := runOnce(ctx, o, o.Warmup, nil); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}
	emit(EventMeasureStart)
	co := newCOLatency(o.QPS, o.Duration, o.Connections)
	res, err := runOnce(ctx, o, o.Duration, co)
	emit(EventMeasureEnd)
	out := &Result{Fortio: res}
	out.Latency, out.CO, out.Series = co.result()
	if err != nil {
		return out, err
	}
	return out, ctx.Err()
}

// Result is a measured run: fortio's own result (its HTTP, gRPC or TCP
// runner's), every request's latency in meshbench's fine histograms, as
// sent and corrected for coordinated omission, and the window second by
// second.
type Result struct {
	Fortio  any
	Latency *stats.HistogramData
	CO      *stats.HistogramData
	// Series is the window second by second.
	Series []results.Second
}

func runOnce(ctx context.Context, o LoadOptions, d time.Duration, logger periodic.AccessLogger) (any, error) {
	rro := periodic.RunnerOptions{
		QPS:         o.QPS,
		Duration:    d,
		NumThreads:  o.Connections,
		Percentiles: Percentiles,
		Resolution:  Resolution,
		Out:         o.Log,
		Stop:        periodic.NewAborter(),
		// Spread the connections' requests instead of firing them together.
		Uniform:      true,
		AccessLogger: logger,
	}
	stop := context.AfterFunc(ctx, func() { rro.Stop.Abort(false) })
	defer stop()
	switch o.Protocol {
	case "grpc":
		return runGRPC(ctx, o, rro)
	case "tcp":
		return runTCP(o, rro)
	case "", "http", "http2":
		return runHTTP(o, rro)
	}
	return nil, fmt.Errorf("unknown protocol %q (http, http2, grpc, tcp)", o.Protocol)
}

func runHTTP(o LoadOptions, rro periodic.RunnerOptions) (*fhttp.HTTPRunnerResults, error) {
	ro := fhttp.HTTPRunnerOptions{RunnerOptions: rro}
	ro.HTTPOptions.URL = o.URL
	ro.HTTPOptions.HTTPReqTimeOut = requestTimeout
	// http2: fortio's standard client over cleartext HTTP/2, a connection
	// per fortio connection.
	ro.HTTPOptions.H2 = o.Protocol == "http2"
	ro.HTTPOptions.InitHeaders()
	if o.Host != "" {
		if err := ro.HTTPOptions.AddAndValidateExtraHeader("Host: " + o.Host); err != nil {
			return nil, err
		}
	}
	if o.Transport != nil {
		// fortio calls this once per connection ("thread"): each gets its own
		// data plane and pool, as each gets its own socket in other modes.
		var terr error
		ro.HTTPOptions.DisableFastClient = true
		// The URL names a service, not a host: the data plane resolves it.
		// fortio must not look it up in DNS for its own bookkeeping.
		ro.HTTPOptions.Resolve = "127.0.0.1"
		ro.HTTPOptions.Transport = func(http.RoundTripper) http.RoundTripper {
			rt, err := o.Transport()
			if err != nil {
				terr = err
				return errTransport{err}
			}
			return rt
		}
		defer func() {
			if terr != nil {
				fmt.Fprintf(o.Log, "proxyless transport: %v\n", terr)
			}
		}()
	}
	if o.RequestSize > 0 {
		ro.HTTPOptions.Payload = []byte(strings.Repeat("m", o.RequestSize))
		ro.HTTPOptions.ContentType = "application/octet-stream"
	}
	return fhttp.RunHTTPTest(&ro)
}

// errTransport fails every request with the error that prevented building
// the real transport, so the run reports errors instead of hanging.
type errTransport struct{ err error }

func (e errTransport) RoundTrip(*http.Request) (*http.Response, error) { return nil, e.err }

// selfCPU is this process's user+system CPU time in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
