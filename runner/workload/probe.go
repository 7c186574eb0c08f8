package workload

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ProbeOptions describe a probe: Count requests, one after another, each
// on a connection kept alive from the last.
type ProbeOptions struct {
	// URL is where requests go (a local proxy, or the service itself);
	// Host, when set, is the authority sent; Path and Method the request's.
	URL, Host, Path, Method string
	Count                   int
	// Timeout bounds each request.
	Timeout time.Duration
	// Transport, when set, carries the requests (the proxyless mode's
	// in-process data plane).
	Transport http.RoundTripper
	// Every, when set, sends one request each interval for For instead
	// of Count back to back (a game day's http probe).
	Every, For time.Duration
}

// Reading is one request of a probe sent every interval.
type Reading struct {
	Time  time.Time `json:"time"`
	Code  int       `json:"code,omitempty"`
	Ms    float64   `json:"ms"`
	Error string    `json:"error,omitempty"`
}

// MaxProbeFor bounds a probe sent every interval.
const MaxProbeFor = 24 * time.Hour

// ProbeEvery sends one request each o.Every for o.For (each bounded by
// o.Timeout; one that overruns the interval delays the next, which then
// follows at once) and hands each reading to each.
func ProbeEvery(ctx context.Context, o ProbeOptions, each func(Reading)) error {
	if o.Every <= 0 || o.For <= 0 || o.For > MaxProbeFor || o.For/o.Every > MaxProbeRequests {
		return fmt.Errorf("every %s for %s: want a positive interval, a duration up to %s and at most %d requests", o.Every, o.For, MaxProbeFor, MaxProbeRequests)
	}
	client, u := o.client()
	ctx, cancel := context.WithTimeout(ctx, o.For)
	defer cancel()
	t := time.NewTicker(o.Every)
	defer t.Stop()
	for {
		start := time.Now()
		r := Reading{Time: start}
		req, err := o.request(ctx, u)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			r.Code = resp.StatusCode
		} else {
			r.Error = err.Error()
		}
		r.Ms = float64(time.Since(start).Microseconds()) / 1000
		if ctx.Err() != nil {
			return nil // the probe's time is up: this reading was cut short
		}
		each(r)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// client is the probe's HTTP client and the URL it requests.
func (o *ProbeOptions) client() (*http.Client, string) {
	if o.Method == "" {
		o.Method = http.MethodGet
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	rt := o.Transport
	if rt == nil {
		rt = &http.Transport{MaxIdleConnsPerHost: 1, IdleConnTimeout: 30 * time.Second}
	}
	client := &http.Client{Transport: rt, Timeout: o.Timeout,
		// A redirect is an answer to count, not to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return client, strings.TrimSuffix(o.URL, "/") + "/" + strings.TrimPrefix(o.Path, "/")
}

// request is one of the probe's requests.
func (o *ProbeOptions) request(ctx context.Context, u string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, o.Method, u, nil)
	if err != nil {
		return nil, err
	}
	if o.Host != "" {
		req.Host = o.Host
	}
	return req, nil
}

// MaxProbeRequests bounds one probe.
const MaxProbeRequests = 100000

// ProbeResult is what a probe saw: each status code's count, how many
// requests got no answer, and which service answered (ServedByHeader).
type ProbeResult struct {
	Requests int            `json:"requests"`
	Codes    map[int]int    `json:"codes"`
	Errors   int            `json:"errors"`
	ServedBy map[string]int `json:"servedBy"`
	// FirstError is the first request error's text.
	FirstError string `json:"firstError,omitempty"`
}

// Probe sends the requests and counts what came back.
func Probe(ctx context.Context, o ProbeOptions) (ProbeResult, error) {
	if o.Count < 1 || o.Count > MaxProbeRequests {
		return ProbeResult{}, fmt.Errorf("count must be between 1 and %d, got %d", MaxProbeRequests, o.Count)
	}
	client, u := o.client()
	res := ProbeResult{Codes: map[int]int{}, ServedBy: map[string]int{}}
	for range o.Count {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		res.Requests++
		req, err := o.request(ctx, u)
		if err != nil {
			return res, err
		}
		resp, err := client.Do(req)
		if err != nil {
			res.Errors++
			if res.FirstError == "" {
				res.FirstError = err.Error()
			}
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		res.Codes[resp.StatusCode]++
		if by := resp.Header.Get(ServedByHeader); by != "" {
			res.ServedBy[by]++
		}
	}
	return res, nil
}
