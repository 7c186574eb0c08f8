package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	chaosv1alpha1 "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"
)

// HTTPFaultOptions are an HTTP fault interposer's: its API, where it
// listens, the application it forwards to, and the socket mark of its
// own connections (which the redirect into it lets pass).
type HTTPFaultOptions struct {
	API, Listen, Upstream string
	Mark                  int
}

// HTTPFaults serves an HTTP/1.1 reverse proxy in front of an application
// until ctx ends, applying the HTTPChaos rules put through its API (PUT
// /rules/NAME with a Chaos Mesh PodHttpChaosRule; DELETE /rules/NAME
// removes it and answers how many requests it matched), as Chaos Mesh's
// tproxy applies them to a pod's port.
func HTTPFaults(ctx context.Context, o HTTPFaultOptions) error {
	f := newHTTPFaults()
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	if o.Mark != 0 {
		dialer.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_MARK, o.Mark) })
			return errors.Join(err, serr)
		}
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = "http", o.Upstream
			r.Out.Host = r.In.Host
			// The request as it came (ReverseProxy drops these before
			// Rewrite): the interposer is not a hop of the mesh's.
			for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v, ok := r.In.Header[h]; ok {
					r.Out.Header[h] = v
				}
			}
			r.Out.URL.RawQuery = r.In.URL.RawQuery
		},
		// Bodies pass as they are: no compression asked for or undone.
		Transport: &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second,
			DisableCompression: true},
		ModifyResponse: f.response,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, errAbort) {
				panic(http.ErrAbortHandler)
			}
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	servers := []*http.Server{
		{Addr: o.API, Handler: f.api(), ReadHeaderTimeout: 5 * time.Second},
		{Addr: o.Listen, Handler: f.request(proxy), ReadHeaderTimeout: 30 * time.Second},
	}
	var listeners []net.Listener
	for _, s := range servers {
		l, err := net.Listen("tcp", s.Addr)
		if err != nil {
			return err
		}
		listeners = append(listeners, l)
	}
	errc := make(chan error, len(servers))
	for i, s := range servers {
		go func() { errc <- s.Serve(listeners[i]) }()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	for _, s := range servers {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = s.Shutdown(sctx)
		cancel()
	}
	return nil
}

// errAbort makes the proxy abort a response (close the connection).
var errAbort = errors.New("abort")

type httpFaults struct {
	mu    sync.Mutex
	rules map[string]*httpRule
	order []string
	// n is len(rules), read without the lock on every request.
	n atomic.Int32
}

func newHTTPFaults() *httpFaults {
	return &httpFaults{rules: map[string]*httpRule{}}
}

// api serves the rules' API: GET /ready, PUT and DELETE /rules/NAME.
func (f *httpFaults) api() http.Handler {
	api := http.NewServeMux()
	api.HandleFunc("GET /ready", func(http.ResponseWriter, *http.Request) {})
	api.HandleFunc("PUT /rules/{name}", f.put)
	api.HandleFunc("DELETE /rules/{name}", f.delete)
	return api
}

// serveAPI serves the rules' API at addr until ctx ends: the fault
// filter of a server that applies them itself (ServerOptions.FaultAPI).
func (f *httpFaults) serveAPI(ctx context.Context, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("fault API: %w", err)
	}
	srv := &http.Server{Handler: f.api(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	return nil
}

// inProcess applies the rules to what next serves in this process, as
// the interposer applies them to what it forwards: the request rules
// before next runs, the response rules to its answer (recorded, changed,
// then written). With no rule in force the request goes straight to
// next.
func (f *httpFaults) inProcess(next http.Handler) http.Handler {
	answer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !f.has(chaosv1alpha1.PodHttpResponse) {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		resp := rec.Result()
		resp.Request = r
		if err := f.response(resp); err != nil {
			panic(http.ErrAbortHandler) // an abort, or the caller is gone
		}
		maps.Copy(w.Header(), resp.Header)
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})
	withRules := f.request(answer)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.n.Load() == 0 {
			next.ServeHTTP(w, r)
			return
		}
		withRules.ServeHTTP(w, r)
	})
}

// has says whether a rule of target is in force.
func (f *httpFaults) has(target chaosv1alpha1.PodHttpChaosTarget) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.rules {
		if r.Target == target {
			return true
		}
	}
	return false
}

// httpRule is a rule in force and the requests it matched.
type httpRule struct {
	chaosv1alpha1.PodHttpChaosRule
	matched int64
}

func (f *httpFaults) put(w http.ResponseWriter, r *http.Request) {
	var rule httpRule
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rule.PodHttpChaosRule); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if t := rule.Target; t != chaosv1alpha1.PodHttpRequest && t != chaosv1alpha1.PodHttpResponse {
		http.Error(w, fmt.Sprintf("target %q: want Request or Response", t), http.StatusBadRequest)
		return
	}
	if d := rule.Actions.Delay; d != nil {
		if _, err := time.ParseDuration(*d); err != nil {
			http.Error(w, "delay: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	name := r.PathValue("name")
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.rules[name]; !ok {
		f.order = append(f.order, name)
	}
	f.rules[name] = &rule
	f.n.Store(int32(len(f.rules)))
}

func (f *httpFaults) delete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	f.mu.Lock()
	rule, ok := f.rules[name]
	if ok {
		delete(f.rules, name)
		f.n.Store(int32(len(f.rules)))
		for i, n := range f.order {
			if n == name {
				f.order = append(f.order[:i], f.order[i+1:]...)
				break
			}
		}
	}
	f.mu.Unlock()
	if !ok {
		http.Error(w, "no rule "+name, http.StatusNotFound)
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]int64{"matched": rule.matched})
}

// matching are the rules of target that match the request (and, for a
// response, the response), counting each match.
func (f *httpFaults) matching(target chaosv1alpha1.PodHttpChaosTarget, req *http.Request, resp *http.Response) []chaosv1alpha1.PodHttpChaosActions {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []chaosv1alpha1.PodHttpChaosActions
	for _, name := range f.order {
		rule := f.rules[name]
		if rule.Target == target && matches(rule.Selector, req, resp) {
			rule.matched++
			out = append(out, rule.Actions)
		}
	}
	return out
}

// matches applies a rule's selector: the path as a glob, the method, and
// every header named (a response's code and headers for a response rule).
func matches(s chaosv1alpha1.PodHttpChaosSelector, req *http.Request, resp *http.Response) bool {
	if s.Path != nil {
		if ok, _ := path.Match(*s.Path, req.URL.Path); !ok {
			return false
		}
	}
	if s.Method != nil && !strings.EqualFold(*s.Method, req.Method) {
		return false
	}
	for k, v := range s.RequestHeaders {
		if req.Header.Get(k) != v {
			return false
		}
	}
	if resp != nil {
		if s.Code != nil && int(*s.Code) != resp.StatusCode {
			return false
		}
		for k, v := range s.ResponseHeaders {
			if resp.Header.Get(k) != v {
				return false
			}
		}
	}
	return true
}

// request applies the request rules before next forwards the request.
func (f *httpFaults) request(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, a := range f.matching(chaosv1alpha1.PodHttpRequest, r, nil) {
			if a.Abort != nil && *a.Abort {
				panic(http.ErrAbortHandler) // the connection is closed
			}
			if err := sleep(r.Context(), a.Delay); err != nil {
				panic(http.ErrAbortHandler) // the caller is gone
			}
			if rp := a.Replace; rp != nil {
				if rp.Path != nil {
					r.URL.Path, r.URL.RawPath = *rp.Path, ""
				}
				if rp.Method != nil {
					r.Method = *rp.Method
				}
				if len(rp.Queries) > 0 {
					q := r.URL.Query()
					for k, v := range rp.Queries {
						q.Set(k, v)
					}
					r.URL.RawQuery = q.Encode()
				}
				for k, v := range rp.Headers {
					r.Header.Set(k, v)
				}
				if rp.Body != nil {
					setBody(&r.Body, &r.ContentLength, r.Header, rp.Body)
				}
			}
			if p := a.Patch; p != nil {
				if len(p.Queries) > 0 {
					q := r.URL.Query()
					for _, kv := range p.Queries {
						if len(kv) == 2 {
							q.Add(kv[0], kv[1])
						}
					}
					r.URL.RawQuery = q.Encode()
				}
				for _, kv := range p.Headers {
					if len(kv) == 2 {
						r.Header.Add(kv[0], kv[1])
					}
				}
				if p.Body != nil {
					body, err := io.ReadAll(r.Body)
					if err != nil {
						http.Error(w, "read the request body: "+err.Error(), http.StatusBadRequest)
						return
					}
					setBody(&r.Body, &r.ContentLength, r.Header, mergePatch(body, p.Body.Value))
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// response applies the response rules to what the application answered.
func (f *httpFaults) response(resp *http.Response) error {
	for _, a := range f.matching(chaosv1alpha1.PodHttpResponse, resp.Request, resp) {
		if a.Abort != nil && *a.Abort {
			return errAbort
		}
		if err := sleep(resp.Request.Context(), a.Delay); err != nil {
			return err
		}
		if rp := a.Replace; rp != nil {
			if rp.Code != nil {
				resp.StatusCode = int(*rp.Code)
				resp.Status = strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode)
			}
			for k, v := range rp.Headers {
				resp.Header.Set(k, v)
			}
			if rp.Body != nil {
				setBody(&resp.Body, &resp.ContentLength, resp.Header, rp.Body)
			}
		}
		if p := a.Patch; p != nil {
			for _, kv := range p.Headers {
				if len(kv) == 2 {
					resp.Header.Add(kv[0], kv[1])
				}
			}
			if p.Body != nil {
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					return err
				}
				setBody(&resp.Body, &resp.ContentLength, resp.Header, mergePatch(body, p.Body.Value))
			}
		}
	}
	return nil
}

// sleep waits a rule's delay, if any.
func sleep(ctx context.Context, d *string) error {
	if d == nil {
		return nil
	}
	dur, _ := time.ParseDuration(*d) // checked when the rule was put
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// setBody replaces a message's body and its length.
func setBody(body *io.ReadCloser, length *int64, h http.Header, b []byte) {
	if *body != nil {
		(*body).Close()
	}
	*body, *length = io.NopCloser(bytes.NewReader(b)), int64(len(b))
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Del("Transfer-Encoding")
}

// mergePatch applies a JSON merge patch (RFC 7396) to a JSON body: a
// body that is not a JSON object is taken as an empty one. Numbers keep
// their text, and nothing is HTML-escaped: only what the patch names
// changes.
func mergePatch(body []byte, patch string) []byte {
	decode := func(b []byte) (any, error) {
		var v any
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		return v, dec.Decode(&v)
	}
	p, err := decode([]byte(patch))
	if err != nil {
		return body // checked at load: the patch is JSON
	}
	target, _ := decode(body)
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(merge(target, p)); err != nil {
		return body
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n"))
}

func merge(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, ok := target.(map[string]any)
	if !ok {
		tm = map[string]any{}
	}
	for k, v := range pm {
		if v == nil {
			delete(tm, k)
			continue
		}
		tm[k] = merge(tm[k], v)
	}
	return tm
}
