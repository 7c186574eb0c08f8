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
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"fortio.org/fortio/fhttp"
)

// ServerOptions are the echo server's knobs. Requests that carry their own
// query string (fortio's size=, delay=, status=) override them.
type ServerOptions struct {
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
}

// HealthPath answers 200 without the echo knobs, for readiness probes.
const HealthPath = "/healthz"

// echoParams renders the options as fortio's default echo query string.
func (o ServerOptions) echoParams() string {
	q := url.Values{}
	q.Set("size", strconv.Itoa(o.PayloadSize))
	if o.Delay > 0 {
		q.Set("delay", o.Delay.String())
	}
	if o.Status != 0 {
		q.Set("status", strconv.Itoa(o.Status))
	}
	return q.Encode()
}

// Serve runs the echo server until ctx ends, then drains for up to 5s.
func Serve(ctx context.Context, o ServerOptions) error {
	if o.PayloadSize < 0 {
		return fmt.Errorf("payload size must be >= 0, got %d", o.PayloadSize)
	}
	// fortio keeps the echo defaults in a process-wide flag; this process is
	// one server, so setting it is safe.
	if err := fhttp.DefaultEchoServerParams.Set(o.echoParams()); err != nil {
		return fmt.Errorf("set echo parameters: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(HealthPath, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("/", fhttp.EchoHandler)
	ln := o.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", o.Listen); err != nil {
			return err
		}
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(dctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
