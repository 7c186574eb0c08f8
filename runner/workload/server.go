// Package workload is the test application: a server built on fortio's echo
// handler and a client that drives load with fortio's periodic runner. The
// platform starts both as processes of the meshbench binary ("meshbench
// workload server|client") inside their nodes.
//
// It is the application, not the harness: it reports what it measured as a
// fortio result and a stream of events, and leaves their meaning to runner.
package workload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"fortio.org/fortio/fhttp"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
)

// ServerOptions are the echo server's knobs. Requests that carry their own
// query string (fortio's size=, delay=, status=) override them.
type ServerOptions struct {
	// Name, when set, is the service's name, sent in every answer's
	// ServedByHeader (how a probe knows which backend of a split served).
	Name string
	// Listen is the address to serve on.
	Listen string
	// PayloadSize is the response body size in bytes.
	PayloadSize int
	// Delay is the service time added to every request.
	Delay time.Duration
	// Status is the response status code (200 when zero).
	Status int
	// Listener, when set, is served instead of listening on Listen (the
	// proxyless mode's mutual-TLS listener).
	Listener net.Listener
	// Calls are the services called, all in parallel, for every request
	// before it is answered; a failed call fails the request (502).
	Calls []Call
	// Transport, when set, carries the calls (the proxyless mode's
	// in-process data plane); otherwise each call has a keep-alive pool
	// dialing its Dial address.
	Transport http.RoundTripper
	// Stats, when set, receives one JSON line with the server's counts
	// (ServedEvent) when it stops.
	Stats io.Writer
	// Guard, when set, wraps the handler (the proxyless mode's RBAC).
	Guard func(http.Handler) http.Handler
	// FaultAPI, when set, is where the server takes HTTPChaos rules (the
	// API of HTTPFaults), which it applies itself to the requests Guard
	// lets in: the proxyless library's fault filter, where no interposer
	// sees plain HTTP. http and http2 only.
	FaultAPI string
	// Protocol is what the server speaks (scenarios.Protocols): http and
	// http2 serve the echo handler over HTTP/1.1 and cleartext HTTP/2
	// (and call over the same), grpc serves fortio's ping service, tcp
	// echoes bytes. Empty is http.
	Protocol string
	// EchoSize, for tcp, is the size of the load's payload: each whole
	// payload echoed is one request (0: each read is).
	EchoSize int
	// GRPCDial, when set, opens the gRPC connection of a call (the
	// proxyless-grpc mode's xDS client); otherwise a call dials its Dial
	// address in cleartext.
	GRPCDial func(Call) (*grpc.ClientConn, error)
	// GRPCServer, when set, makes the gRPC server (the proxyless-grpc
	// mode's, with xDS credentials); otherwise a cleartext one.
	GRPCServer func() (GRPCServer, error)
}

// Call is a service the server calls for every request: its authority
// (the Host sent) and the address to dial, which may be a local proxy.
type Call struct {
	Authority string
	Dial      string
}

// ParseCall reads a --call value: AUTHORITY or AUTHORITY=DIAL_ADDRESS.
func ParseCall(v string) (Call, error) {
	auth, dial, _ := strings.Cut(v, "=")
	if _, _, err := net.SplitHostPort(auth); err != nil {
		return Call{}, fmt.Errorf("call %q: authority: %v (want host:port[=dial-host:port])", v, err)
	}
	if dial != "" {
		if _, _, err := net.SplitHostPort(dial); err != nil {
			return Call{}, fmt.Errorf("call %q: dial address: %v (want host:port[=dial-host:port])", v, err)
		}
	}
	return Call{Authority: auth, Dial: dial}, nil
}

// ServedEvent is the server's last line on Stats: what it served and how
// its calls went, so that a run can show each hop of a topology carried
// the traffic.
type ServedEvent struct {
	Event      string `json:"event"`
	Requests   int64  `json:"requests"`
	Calls      int64  `json:"calls"`
	CallErrors int64  `json:"callErrors"`
	// FirstError is the first failed call's error, for the log.
	FirstError string `json:"firstError,omitempty"`
	// HTTP1 counts the requests that came over HTTP/1.x (an http2
	// load's must all be HTTP/2: a hop that fell back shows here).
	HTTP1 int64 `json:"http1,omitempty"`
}

// EventServed names ServedEvent.
const EventServed = "served"

// TickEvent is the server's count so far, once a second on Stats: the
// per-second series of what each service served (a canary's shift shows
// in it).
type TickEvent struct {
	Event    string    `json:"event"`
	Time     time.Time `json:"time"`
	Requests int64     `json:"requests"`
}

// EventTick names TickEvent.
const EventTick = "tick"

// EventStart marks a server's start in its log: what follows is one
// incarnation's (a restarted server's counts start again at 0).
const EventStart = "start"

// caller makes a server's calls and counts them.
type caller struct {
	name                         string
	delay                        time.Duration
	calls                        []Call
	do                           []func(context.Context) error
	closers                      []func() error
	requests, called, callErrors atomic.Int64
	http1                        atomic.Int64
	firstErr                     atomic.Value
}

// callTimeout bounds one call, as fortio bounds one request.
const callTimeout = 15 * time.Second

func newCaller(o ServerOptions) (*caller, error) {
	c := &caller{name: o.Name, calls: o.Calls, delay: o.Delay}
	for _, call := range o.Calls {
		var do func(context.Context) error
		switch o.Protocol {
		case "grpc":
			conn, err := dialGRPC(o, call)
			if err != nil {
				c.close()
				return nil, fmt.Errorf("call %s: %w", call.Authority, err)
			}
			c.closers = append(c.closers, conn.Close)
			do = pingCall(conn) // an empty ping, as HTTP calls are GETs
		default:
			do = httpCall(o, call)
		}
		c.do = append(c.do, do)
	}
	return c, nil
}

func (c *caller) close() {
	for _, f := range c.closers {
		_ = f()
	}
}

// httpCall is a GET of the callee's root, over HTTP/1.1 or (http2)
// cleartext HTTP/2.
func httpCall(o ServerOptions, call Call) func(context.Context) error {
	rt := o.Transport
	if rt == nil {
		dial := call.Dial
		if dial == "" {
			dial = call.Authority
		}
		d := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
		tr := &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, dial)
			},
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     90 * time.Second,
		}
		if o.Protocol == "http2" {
			tr.Protocols = new(http.Protocols)
			tr.Protocols.SetUnencryptedHTTP2(true)
		}
		rt = tr
	}
	client := &http.Client{Transport: rt, Timeout: callTimeout}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+call.Authority+"/", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode/100 != 2 {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		return err
	}
}

// callAll calls every service in parallel and returns the first failure.
func (c *caller) callAll(ctx context.Context) error {
	errs := make([]error, len(c.calls))
	var wg sync.WaitGroup
	for i := range c.calls {
		wg.Go(func() { errs[i] = c.call(ctx, i) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *caller) call(ctx context.Context, i int) error {
	c.called.Add(1)
	err := c.do[i](ctx)
	if err != nil {
		err = fmt.Errorf("call %s: %w", c.calls[i].Authority, err)
		c.callErrors.Add(1)
		c.firstErr.CompareAndSwap(nil, err.Error())
	}
	return err
}

func (c *caller) served() ServedEvent {
	ev := ServedEvent{Event: EventServed, Requests: c.requests.Load(), Calls: c.called.Load(), CallErrors: c.callErrors.Load(), HTTP1: c.http1.Load()}
	if e, ok := c.firstErr.Load().(string); ok {
		ev.FirstError = e
	}
	return ev
}

// handler answers with fortio's echo handler after the service time and
// the calls.
func (c *caller) handler(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor < 2 {
		c.http1.Add(1)
	}
	if c.name != "" {
		w.Header().Set(ServedByHeader, c.name)
	}
	if err := c.serve(r.Context()); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	fhttp.EchoHandler(w, r)
}

// serve counts a request, waits the service time and makes the calls:
// what every protocol's server does before it answers.
func (c *caller) serve(ctx context.Context) error {
	c.requests.Add(1)
	if c.delay > 0 {
		serviceTime(c.delay)
	}
	if len(c.calls) > 0 {
		return c.callAll(ctx)
	}
	return nil
}

// ServedByHeader names the service that answered.
const ServedByHeader = "X-Meshbench-Served-By"

// HealthPath answers 200 without the echo knobs, for readiness probes.
const HealthPath = "/healthz"

// echoParams renders the options as fortio's default echo query string.
func (o ServerOptions) echoParams() string {
	q := url.Values{}
	q.Set("size", strconv.Itoa(o.PayloadSize))
	if o.Status != 0 {
		q.Set("status", strconv.Itoa(o.Status))
	}
	return q.Encode()
}

// Serve runs the server until ctx ends, then drains for up to 5s.
func Serve(ctx context.Context, o ServerOptions) error {
	if o.PayloadSize < 0 {
		return fmt.Errorf("payload size must be >= 0, got %d", o.PayloadSize)
	}
	switch o.Protocol {
	case "", "http", "http2", "grpc", "tcp":
	default:
		return fmt.Errorf("unknown protocol %q (http, http2, grpc, tcp)", o.Protocol)
	}
	if o.Protocol == "tcp" && len(o.Calls) > 0 {
		return errors.New("a TCP echo server makes no calls")
	}
	if o.FaultAPI != "" && (o.Protocol == "grpc" || o.Protocol == "tcp") {
		return fmt.Errorf("a %s server applies no HTTP faults", o.Protocol)
	}
	c, err := newCaller(o)
	if err != nil {
		return err
	}
	defer c.close()
	if o.Stats != nil {
		defer reportCounts(o.Stats, c)()
	}
	ln := o.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", o.Listen); err != nil {
			return err
		}
	}
	switch o.Protocol {
	case "grpc":
		return serveGRPC(ctx, ln, c, o)
	case "tcp":
		return serveTCP(ctx, ln, c, o.EchoSize)
	}
	return serveHTTP(ctx, ln, c, o)
}

// reportCounts writes the server's count once a second on whole seconds
// of the clock (so that every service's seconds are the same ones) and,
// when the returned function is called, its final counts.
func reportCounts(w io.Writer, c *caller) (stop func()) {
	var mu sync.Mutex
	write := func(v any) {
		b, _ := json.Marshal(v)
		mu.Lock()
		defer mu.Unlock()
		_, _ = w.Write(append(b, '\n'))
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	write(struct {
		Event string `json:"event"`
	}{EventStart})
	go func() {
		defer close(stopped)
		next := time.Now().Truncate(time.Second).Add(time.Second)
		t := time.NewTimer(time.Until(next))
		defer t.Stop()
		for {
			select {
			case <-t.C:
				write(TickEvent{Event: EventTick, Time: next, Requests: c.requests.Load()})
				next = next.Add(time.Second)
				t.Reset(time.Until(next))
			case <-done:
				return
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
		write(c.served())
	}
}

// drainTimeout bounds a server's graceful stop, well within the 5 s the
// runner gives a process to exit before it kills it (and the final counts
// are lost). net/http's Shutdown waits up to 5 s for a connection that was
// opened and never used (StateNew): a keep-alive client pool dials such
// spares. What is still open after the drain is closed.
const drainTimeout = 2 * time.Second

// serveHTTP serves fortio's echo handler over HTTP/1.1 and, for http2,
// cleartext HTTP/2 (prior knowledge) as well.
func serveHTTP(ctx context.Context, ln net.Listener, c *caller, o ServerOptions) error {
	// fortio keeps the echo defaults in a process-wide flag; this process is
	// one server, so setting it is safe.
	if err := fhttp.DefaultEchoServerParams.Set(o.echoParams()); err != nil {
		return fmt.Errorf("set echo parameters: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(HealthPath, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("/", c.handler)
	var handler http.Handler = mux
	if o.FaultAPI != "" {
		f := newHTTPFaults()
		if err := f.serveAPI(ctx, o.FaultAPI); err != nil {
			return err
		}
		handler = f.inProcess(handler)
	}
	if o.Guard != nil {
		handler = o.Guard(handler)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	if o.Protocol == "http2" {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetHTTP2(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	dctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := srv.Shutdown(dctx); errors.Is(err, context.DeadlineExceeded) {
		return srv.Close()
	} else if err != nil {
		return err
	}
	return nil
}

// serviceTime waits d with microsecond precision, without holding a CPU:
// on a timerfd read through Go's network poller, which wakes as soon as
// the timer fires. time.Sleep would be simpler, but for less than a
// millisecond it wakes up to a millisecond late when the process is
// otherwise idle (its timers ride on epoll_wait's millisecond timeout):
// asked for 120us, the echo server took 1.1ms. A blocking nanosleep is
// precise but holds the process's only P when the app is pinned to one
// CPU, serializing overlapping requests.
func serviceTime(d time.Duration) {
	if d >= 2*time.Millisecond {
		time.Sleep(d) // a late millisecond is within the noise here
		return
	}
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		time.Sleep(d)
		return
	}
	f := os.NewFile(uintptr(fd), "service-time")
	defer f.Close()
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if err := unix.TimerfdSettime(fd, 0, &spec, nil); err != nil {
		time.Sleep(d)
		return
	}
	var expirations [8]byte
	_, _ = f.Read(expirations[:])
}
