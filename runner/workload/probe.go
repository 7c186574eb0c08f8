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
	u := strings.TrimSuffix(o.URL, "/") + "/" + strings.TrimPrefix(o.Path, "/")
	res := ProbeResult{Codes: map[int]int{}, ServedBy: map[string]int{}}
	for range o.Count {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		res.Requests++
		req, err := http.NewRequestWithContext(ctx, o.Method, u, nil)
		if err != nil {
			return res, err
		}
		if o.Host != "" {
			req.Host = o.Host
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
