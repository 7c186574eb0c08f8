package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// serve starts a server on a loopback port and returns its address and a
// stop function that waits for it to exit.
func serve(t *testing.T, o ServerOptions) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.Listener = ln
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, o) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

// TestServerCallsEveryServiceFirst runs a front service calling two real
// leaf services (one through a dial address that differs from its
// authority, as a proxy's would): each request reaches both, a failing
// callee fails the request with 502, and the counts come out at exit.
func TestServerCallsEveryServiceFirst(t *testing.T) {
	leafA, _ := serve(t, ServerOptions{PayloadSize: 10})
	leafB, stopB := serve(t, ServerOptions{PayloadSize: 10})
	var stats bytes.Buffer
	front, stopFront := serve(t, ServerOptions{
		PayloadSize: 100,
		Calls:       []Call{{Authority: leafA, Dial: leafA}, {Authority: "leaf-b:8080", Dial: leafB}},
		Stats:       &stats,
	})
	get := func() int {
		resp, err := http.Get("http://" + front + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for range 5 {
		if code := get(); code != http.StatusOK {
			t.Fatalf("status %d with both callees up", code)
		}
	}
	stopB()
	if code := get(); code != http.StatusBadGateway {
		t.Errorf("status %d with a callee down, want 502", code)
	}
	stopFront()
	// The log: a start event, then (no tick in so short a run) the
	// counts at exit.
	lines := strings.Split(strings.TrimSpace(stats.String()), "\n")
	var ev ServedEvent
	if len(lines) < 2 || lines[0] != `{"event":"start"}` {
		t.Fatalf("stats %q: want a start event first", stats.String())
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &ev); err != nil {
		t.Fatalf("stats %q: %v", stats.String(), err)
	}
	if ev.Event != EventServed || ev.Requests != 6 || ev.Calls != 12 || ev.CallErrors != 1 || !strings.Contains(ev.FirstError, "leaf-b:8080") {
		t.Errorf("stats %+v, want 6 requests, 12 calls, 1 error naming leaf-b", ev)
	}
}

func TestParseCall(t *testing.T) {
	for in, want := range map[string]Call{
		"api:8080":                 {Authority: "api:8080"},
		"api:8080=127.0.0.1:15001": {Authority: "api:8080", Dial: "127.0.0.1:15001"},
	} {
		if got, err := ParseCall(in); err != nil || got != want {
			t.Errorf("ParseCall(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"api", "api:8080=nowhere", ""} {
		if _, err := ParseCall(bad); err == nil {
			t.Errorf("ParseCall(%q) accepted", bad)
		}
	}
}

// TestServiceTimeIsPrecise checks that a sub-millisecond service time is
// honoured to within the kernel's timer slack, not rounded up to the
// millisecond (as time.Sleep does in an otherwise idle Go process): the
// fastest of 200 waits, so that a busy machine, which can delay any one
// wake-up by a scheduler slice, cannot fail it. Through the server, each
// request takes at least the service time.
func TestServiceTimeIsPrecise(t *testing.T) {
	var best time.Duration
	for i := range 200 {
		start := time.Now()
		serviceTime(200 * time.Microsecond)
		if d := time.Since(start); i == 0 || d < best {
			best = d
		}
	}
	if best < 200*time.Microsecond || best > 900*time.Microsecond {
		t.Errorf("fastest of 200 service times of 200us took %v", best)
	}

	addr, _ := serve(t, ServerOptions{PayloadSize: 10, Delay: 200 * time.Microsecond})
	client := &http.Client{}
	for range 5 {
		start := time.Now()
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if d := time.Since(start); d < 200*time.Microsecond {
			t.Errorf("a round trip with a 200us service time took %v", d)
		}
	}
}
