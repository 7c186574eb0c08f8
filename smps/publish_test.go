package smps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/scenarios"
)

// fakeRun writes a results directory with a manifest and the SMPS
// documents of two trials, as a run leaves them.
func fakeRun(t *testing.T, id string, start time.Time) (string, *results.Manifest, []*results.Trial) {
	t.Helper()
	s, err := scenarios.LoadBuiltin("smoke")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), id)
	m := &results.Manifest{RunID: id, Scenario: s, StartTime: start, Platform: results.Platform{Network: "netns"}}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := results.WriteJSON(filepath.Join(dir, results.ManifestFile), m); err != nil {
		t.Fatal(err)
	}
	write := func(path string, msg Message) {
		b, err := Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, results.SMPEnvFile), Environment(m))
	var trials []*results.Trial
	for _, mode := range []string{"baseline", "sidecar"} {
		mesh := map[string]string{"baseline": "none", "sidecar": "meshbench"}[mode]
		tr := &results.Trial{Mesh: mesh, Mode: mode, Trial: 1, Requested: 200, Achieved: 199, Start: start, End: start.Add(time.Second),
			LatencyMs: results.Latency{P50: 0.2, P99: 1}}
		cfg, res := FromTrial(m, tr)
		td := filepath.Join(dir, tr.Dir())
		write(filepath.Join(td, results.SMPConfigFile), cfg)
		write(filepath.Join(td, results.SMPResultFile), res)
		write(filepath.Join(td, results.SMPMeshFile), MeshConfig(m, tr))
		trials = append(trials, tr)
	}
	return dir, m, trials
}

// TestPublishDirIsIdempotentAndConcurrencySafe publishes runs from many
// goroutines at once, some of them the same run, and checks the index
// lists every run exactly once, newest first, with its documents.
func TestPublishDirIsIdempotentAndConcurrencySafe(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "index")
	base := time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)
	type run struct {
		dir    string
		m      *results.Manifest
		trials []*results.Trial
	}
	var runs []run
	for i := range 6 {
		dir, m, trials := fakeRun(t, fmt.Sprintf("run%03d", i), base.Add(time.Duration(i)*time.Hour))
		runs = append(runs, run{dir, m, trials})
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for k := range 3 { // every run published three times, all at once
		for _, r := range runs {
			wg.Go(func() {
				page := []byte("<html>report " + r.m.RunID + "</html>")
				if _, err := PublishDir(context.Background(), r.dir, r.m, r.trials, page, dest); err != nil {
					errs <- fmt.Errorf("publish %s (copy %d): %w", r.m.RunID, k, err)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	idx, err := ReadIndex(dest)
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Runs) != len(runs) {
		t.Fatalf("index lists %d runs, want %d: %+v", len(idx.Runs), len(runs), idx.Runs)
	}
	for i, e := range idx.Runs {
		want := runs[len(runs)-1-i].m.RunID // newest first
		if e.RunID != want || len(e.Documents) != 7 || e.Report == "" || len(e.Modes) != 2 {
			t.Errorf("entry %d: %+v, want run %s with 7 documents and a report", i, e, want)
		}
		for _, d := range e.Documents {
			if _, err := os.Stat(filepath.Join(dest, e.Dir, d)); err != nil {
				t.Errorf("listed document missing: %v", err)
			}
		}
	}
	page, _ := os.ReadFile(filepath.Join(dest, IndexPage))
	if strings.Count(string(page), "<tr>") != len(runs)+1 {
		t.Errorf("index page rows:\n%s", page)
	}
	// Publishing again changes nothing.
	before, _ := os.ReadFile(filepath.Join(dest, IndexFile))
	if _, err := PublishDir(context.Background(), runs[2].dir, runs[2].m, runs[2].trials, []byte("<html>report run002</html>"), dest); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(dest, IndexFile))
	if string(before) != string(after) {
		t.Error("republishing a run changed the index")
	}
	leftovers, _ := filepath.Glob(filepath.Join(dest, "runs", ".stage-*"))
	if len(leftovers) > 0 {
		t.Errorf("staging directories left behind: %v", leftovers)
	}
}

func TestPublishDirRejectsUnsafeRunIDs(t *testing.T) {
	dest := t.TempDir()
	for _, id := range []string{"", "..", "a/b", ".hidden"} {
		dir, m, trials := fakeRun(t, "safe01", time.Now())
		m.RunID = id
		if _, err := PublishDir(context.Background(), dir, m, trials, nil, dest); err == nil {
			t.Errorf("published run id %q", id)
		}
	}
	if entries, _ := os.ReadDir(dest); len(entries) != 0 {
		t.Errorf("refused publishes left %v", entries)
	}
}

func TestPublishHTTPRefusesRedirects(t *testing.T) {
	dir, m, _ := fakeRun(t, "web003", time.Now())
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			gets.Add(1)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	defer srv.Close()
	err := PublishHTTP(context.Background(), dir, m, srv.URL, HTTPOptions{Attempts: 3, Backoff: time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "302") || gets.Load() != 0 {
		t.Errorf("redirect: %v (%d GETs followed)", err, gets.Load())
	}
}

func TestPublishDirRejectsInvalidDocuments(t *testing.T) {
	dir, m, trials := fakeRun(t, "bad001", time.Now())
	path := filepath.Join(dir, trials[0].Dir(), results.SMPResultFile)
	if err := os.WriteFile(path, []byte(`{"smpVersion": "v0.6.1", "latency": 3}`), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	if _, err := PublishDir(context.Background(), dir, m, trials, nil, dest); err == nil || !strings.Contains(err.Error(), "PerformanceTestResult") {
		t.Errorf("published an invalid document: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dest, IndexFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an index was written for a failed publish: %v", err)
	}
}

// TestPublishHTTPRetries posts to a real local server that fails twice
// with 503 (one Retry-After) before accepting, and checks the upload.
func TestPublishHTTPRetries(t *testing.T) {
	dir, m, _ := fakeRun(t, "web001", time.Now())
	var calls atomic.Int32
	var got Upload
	var key string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if n <= 2 {
			if n == 1 {
				w.Header().Set("Retry-After", "0")
			}
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		key = r.Header.Get("Idempotency-Key")
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &got); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	err := PublishHTTP(context.Background(), dir, m, srv.URL, HTTPOptions{Attempts: 4, Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 3 || key != "web001" || got.RunID != "web001" || len(got.Documents) != 7 || got.Documents[0].Kind == "" {
		t.Errorf("%d calls, key %q, upload %+v", calls.Load(), key, got)
	}
}

func TestPublishHTTPFailsClearly(t *testing.T) {
	dir, m, _ := fakeRun(t, "web002", time.Now())
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.URL.Path == "/denied" {
			http.Error(w, "token expired", http.StatusUnauthorized)
			return
		}
		http.Error(w, "database down", http.StatusInternalServerError)
	}))
	defer srv.Close()
	// A client error is final: one call, the server's words in the error.
	err := PublishHTTP(context.Background(), dir, m, srv.URL+"/denied", HTTPOptions{Attempts: 4, Backoff: time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "token expired") || calls.Load() != 1 {
		t.Errorf("401: %v after %d calls", err, calls.Load())
	}
	// Server errors are retried, then reported.
	calls.Store(0)
	err = PublishHTTP(context.Background(), dir, m, srv.URL+"/down", HTTPOptions{Attempts: 3, Backoff: time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "gave up after 3 attempts") || !strings.Contains(err.Error(), "database down") || calls.Load() != 3 {
		t.Errorf("500: %v after %d calls", err, calls.Load())
	}
	// Nothing listens: a connection error, retried, then reported.
	srv.Close()
	err = PublishHTTP(context.Background(), dir, m, srv.URL, HTTPOptions{Attempts: 2, Backoff: time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "gave up after 2 attempts") {
		t.Errorf("closed server: %v", err)
	}
}
