package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestHTTPFaults puts Chaos Mesh rules in the HTTP interposer in front of
// an application that echoes what it got, and checks each action on real
// requests: matching by path, method and header; replace and patch of a
// request; a response's code replaced only where the code matched; a
// JSON body merge-patched; an abort closing the connection; the count of
// matched requests when a rule is removed.
func TestHTTPFaults(t *testing.T) {
	app := httptest.NewServer(echoJSON)
	defer app.Close()
	api, listen := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- HTTPFaults(ctx, HTTPFaultOptions{API: api, Listen: listen, Upstream: strings.TrimPrefix(app.URL, "http://")})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	checkHTTPFaults(t, api, listen)
}

// TestHTTPFaultsInProcess: the same rules and checks, applied by a server
// to what it serves itself (the proxyless library's fault filter).
func TestHTTPFaultsInProcess(t *testing.T) {
	f := newHTTPFaults()
	app := httptest.NewServer(f.inProcess(echoJSON))
	defer app.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	api := freeAddr(t)
	if err := f.serveAPI(ctx, api); err != nil {
		t.Fatal(err)
	}
	checkHTTPFaults(t, api, strings.TrimPrefix(app.URL, "http://"))
}

// echoJSON answers with what it got, as JSON.
var echoJSON = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "path": r.URL.Path, "query": r.URL.RawQuery,
		"x": r.Header.Values("X-Test"), "xff": r.Header.Get("X-Forwarded-For"), "body": string(body), "keep": 1, "big": json.Number("12345678901234567890")})
})

// checkHTTPFaults puts rules through the API at api and checks each
// action on real requests to listen.
func checkHTTPFaults(t *testing.T, api, listen string) {
	t.Helper()
	call := func(method, url, body string) (*http.Response, []byte, error) {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, _, err := call("GET", "http://"+api+"/ready", ""); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("interposer not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	put := func(name, rule string) {
		t.Helper()
		resp, b, err := call("PUT", "http://"+api+"/rules/"+name, rule)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("put %s: %v %s", name, err, b)
		}
	}
	remove := func(name string) int {
		t.Helper()
		resp, b, err := call("DELETE", "http://"+api+"/rules/"+name, "")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("delete %s: %v %s", name, err, b)
		}
		var n struct{ Matched int }
		_ = json.Unmarshal(b, &n)
		return n.Matched
	}
	echo := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		resp, b, err := call(method, "http://"+listen+path, body)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		var got map[string]any
		_ = json.Unmarshal(b, &got)
		return resp.StatusCode, got
	}

	put("rewrite", `{"target": "Request", "port": 8080, "selector": {"path": "/api/*", "method": "POST"},
		"actions": {"replace": {"path": "/v2", "queries": {"a": "1"}, "headers": {"X-Test": "replaced"}},
		            "patch": {"headers": [["X-Test", "added"]], "queries": [["b", "2"]], "body": {"type": "JSON", "value": "{\"k\": 2, \"gone\": null}"}}}}`)
	if code, got := echo("POST", "/api/x?a=0", `{"gone": true, "k": 1}`); code != 200 || got["path"] != "/v2" || got["query"] != "a=1&b=2" ||
		fmt.Sprint(got["x"]) != "[replaced added]" || got["body"] != `{"k":2}` {
		t.Errorf("rewritten request arrived as %d %v", code, got)
	}
	if _, got := echo("GET", "/api/x", ""); got["path"] != "/api/x" {
		t.Errorf("a GET matched the POST rule: %v", got)
	}
	if n := remove("rewrite"); n != 1 {
		t.Errorf("the rule matched %d requests, want 1", n)
	}

	put("teapot", `{"target": "Response", "port": 8080, "selector": {"code": 200, "request_headers": {"X-Chaos": "yes"}},
		"actions": {"replace": {"code": 418}, "patch": {"body": {"type": "JSON", "value": "{\"keep\": null, \"chaos\": true}"}}}}`)
	req, _ := http.NewRequest("GET", "http://"+listen+"/", nil)
	req.Header.Set("X-Chaos", "yes")
	req.Header.Set("X-Forwarded-For", "10.0.0.1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var got map[string]any
	_ = json.Unmarshal(b, &got)
	// The patch changes what it names; the rest (a number beyond a
	// float64's precision, the caller's X-Forwarded-For) passes as it was.
	if resp.StatusCode != 418 || got["chaos"] != true || got["keep"] != nil || resp.ContentLength != int64(len(b)) ||
		got["xff"] != "10.0.0.1" || !bytes.Contains(b, []byte(`"big":12345678901234567890`)) {
		t.Errorf("patched response: %d %s (length %d)", resp.StatusCode, b, resp.ContentLength)
	}
	if code, _ := echo("GET", "/", ""); code != 200 {
		t.Errorf("a request without the header got %d", code)
	}
	remove("teapot")

	put("slow", `{"target": "Response", "port": 8080, "selector": {}, "actions": {"delay": "150ms"}}`)
	start := time.Now()
	echo("GET", "/", "")
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("a delayed response came after %s", d)
	}
	remove("slow")

	put("cut", `{"target": "Request", "port": 8080, "selector": {}, "actions": {"abort": true}}`)
	// A POST: Go's client would send an idempotent GET again on a new
	// connection after a reused one closed.
	if _, _, err := call("POST", "http://"+listen+"/", "x"); err == nil {
		t.Errorf("an aborted request got an answer")
	}
	if n := remove("cut"); n != 1 {
		t.Errorf("abort matched %d, want 1", n)
	}
	if code, _ := echo("GET", "/", ""); code != 200 {
		t.Errorf("after the rules were removed: %d", code)
	}

	// Bad rules are refused.
	for _, bad := range []string{`{"target": "Body"}`, `{"target": "Request", "actions": {"delay": "soon"}}`, `{"target": "Request", "bogus": 1}`} {
		resp, b, err := call("PUT", "http://"+api+"/rules/bad", bad)
		if err != nil {
			t.Errorf("rule %s: %v", bad, err)
		} else if resp.StatusCode != 400 {
			t.Errorf("rule %s: %d %s, want 400", bad, resp.StatusCode, bytes.TrimSpace(b))
		}
	}
}
