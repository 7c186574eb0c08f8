package workload

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestProbeEvery sends one request each interval until its time is up,
// each reading its status; one the server does not answer in time is an
// error; bad bounds are refused.
func TestProbeEvery(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 2 {
			time.Sleep(150 * time.Millisecond) // past the timeout
		}
		if r.Host != "svc" || r.URL.Path != "/health" {
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	var got []Reading
	o := ProbeOptions{URL: srv.URL, Host: "svc", Path: "health", Every: 200 * time.Millisecond, For: 700 * time.Millisecond, Timeout: 100 * time.Millisecond}
	if err := ProbeEvery(context.Background(), o, func(r Reading) { got = append(got, r) }); err != nil {
		t.Fatal(err)
	}
	if len(got) < 3 || len(got) > 4 {
		t.Fatalf("%d readings in 700 ms every 200 ms: %+v", len(got), got)
	}
	for i, r := range got {
		if i == 1 {
			if r.Error == "" || r.Code != 0 {
				t.Errorf("reading %d: %+v, want the timeout", i, r)
			}
			continue
		}
		if r.Code != 200 || r.Error != "" || r.Time.IsZero() {
			t.Errorf("reading %d: %+v, want 200", i, r)
		}
	}
	if err := ProbeEvery(context.Background(), ProbeOptions{URL: srv.URL, Every: time.Millisecond, For: time.Hour}, func(Reading) {}); err == nil {
		t.Errorf("3.6 million requests were not refused")
	}
}
