package proxy

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// Peer suites: test programs nobody here wrote, built from the Go module
// proxy (they are tool directives in go.mod), run against the proxy.

// buildTool builds one of go.mod's tools and returns its path.
func buildTool(t *testing.T, pkg string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the peer suites are built with the go command: %v", err)
	}
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command(goBin, "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// knownGoH2Failures are the h2spec cases Go's own HTTP/2 server (net/http,
// Go 1.26) fails, each for a reason of Go's; the proxy must pass every
// other case.
var knownGoH2Failures = map[string]string{
	"http2/3.5/2":     "invalid connection preface: Go resets the connection instead of sending GOAWAY",
	"http2/4.2/3":     "HEADERS larger than SETTINGS_MAX_FRAME_SIZE: Go advertises a larger limit than h2spec assumes, and answers",
	"http2/6.5.3/1":   "two values of SETTINGS_INITIAL_WINDOW_SIZE in one frame: Go answers GOAWAY where h2spec wants an ACK",
	"http2/8.1.2.2/1": "connection-specific header field: Go answers 400 instead of a stream error",
	"http2/8.1.2.2/2": "TE other than trailers: Go answers 400 instead of a stream error",
}

// TestIntegrationH2Spec runs h2spec against Go's own HTTP/2 server and
// against the proxy's h2c listener: every case Go's server passes must
// pass through the proxy, and Go's failures must be the known ones.
func TestIntegrationH2Spec(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (builds and runs h2spec): skipped with -short")
	}
	h2spec := buildTool(t, "github.com/summerwind/h2spec/cmd/h2spec")

	// Go's server, h2c only; it reads each request body before answering,
	// as the proxy does, so the content-length cases do not race.
	ref := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}), Protocols: new(http.Protocols), ErrorLog: log.New(io.Discard, "", 0)}
	ref.Protocols.SetUnencryptedHTTP2(true)
	refLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ref.Serve(refLn)
	t.Cleanup(func() { ref.Close() })

	up := upstream(t, 200, 0)
	_, proxyAddr := startProxy(t, oneRoute(hostOf(up.Server)))

	// h2spec waits at most its timeout for each answer, so a busy machine
	// can fail a case now and then, for either server. A case counts as
	// the proxy's failure only when it failed in every run, and Go's
	// server failed it in none; the suites run again (up to three times in
	// all) while the runs so far say otherwise.
	goRuns, proxyRuns := &h2specRuns{}, &h2specRuns{}
	for range 3 {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); goRuns.add(h2specFailures(t, h2spec, refLn.Addr().String())) }()
		go func() { defer wg.Done(); proxyRuns.add(h2specFailures(t, h2spec, proxyAddr)) }()
		wg.Wait()
		if t.Failed() || h2specVerdict(goRuns, proxyRuns) == nil {
			break
		}
	}
	for _, err := range h2specVerdict(goRuns, proxyRuns) {
		t.Error(err)
	}
	t.Logf("h2spec, %d runs: Go's server failed %v; the proxy failed %v", len(goRuns.runs), goRuns.any(), proxyRuns.any())
}

// h2specRuns are the failed case IDs of each run against one server.
type h2specRuns struct{ runs [][]string }

func (r *h2specRuns) add(failed []string) { r.runs = append(r.runs, failed) }

// every returns the cases that failed in every run; any, those that
// failed in at least one.
func (r *h2specRuns) every() []string {
	var out []string
	for _, id := range r.any() {
		all := true
		for _, run := range r.runs {
			all = all && slices.Contains(run, id)
		}
		if all {
			out = append(out, id)
		}
	}
	return out
}

func (r *h2specRuns) any() []string {
	var out []string
	for _, run := range r.runs {
		for _, id := range run {
			if !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	slices.Sort(out)
	return out
}

// h2specVerdict says what is wrong with the runs so far: a case the proxy
// failed every time that Go's server always passed, a failure of Go's
// server that is not among the known ones, or a known one that no longer
// happens.
func h2specVerdict(goRuns, proxyRuns *h2specRuns) []error {
	var errs []error
	goAny := goRuns.any()
	for _, id := range proxyRuns.every() {
		if !slices.Contains(goAny, id) {
			errs = append(errs, fmt.Errorf("the proxy fails h2spec %s, which Go's own server passes", id))
		}
	}
	for _, id := range goRuns.every() {
		if _, ok := knownGoH2Failures[id]; !ok {
			errs = append(errs, fmt.Errorf("Go's own server fails h2spec %s, which is not among the known failures: a Go change? update knownGoH2Failures", id))
		}
	}
	for id := range knownGoH2Failures {
		if !slices.Contains(goAny, id) {
			errs = append(errs, fmt.Errorf("Go's own server passed h2spec %s: drop it from knownGoH2Failures", id))
		}
	}
	return errs
}

// h2specFailures runs the whole h2spec suite against addr and returns the
// IDs (section/number) of the cases that failed.
func h2specFailures(t *testing.T, bin, addr string) []string {
	host, port, _ := net.SplitHostPort(addr)
	report := filepath.Join(t.TempDir(), "h2spec.xml")
	args := []string{"-h", host, "-p", port, "-o", "3", "-j", report}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Errorf("h2spec %v did not end within 5 minutes", args)
		return nil
	}
	failed, total, perr := readH2specReport(report)
	if perr != nil {
		t.Errorf("h2spec %v: %v (exit: %v)\n%s", args, perr, err, out)
	}
	if total < 140 {
		t.Errorf("h2spec against %s ran %d cases, want the whole suite (146)", addr, total)
	}
	return failed
}

// readH2specReport reads h2spec's JUnit report: a case's ID is its
// suite's package and its position in the suite, as h2spec numbers them.
func readH2specReport(path string) (failed []string, total int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	var r struct {
		Suites []struct {
			Package string `xml:"package,attr"`
			Cases   []struct {
				Name    string    `xml:"classname,attr"`
				Failure *struct{} `xml:"failure"`
				Error   *struct{} `xml:"error"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &r); err != nil {
		return nil, 0, fmt.Errorf("h2spec report: %w", err)
	}
	for _, s := range r.Suites {
		for i, c := range s.Cases {
			total++
			if c.Failure != nil || c.Error != nil {
				failed = append(failed, s.Package+"/"+strconv.Itoa(i+1))
			}
		}
	}
	return failed, total, nil
}

// grpcInteropCases are grpc-go's interop test cases for a plaintext
// channel, empty_unary through unimplemented_service.
var grpcInteropCases = []string{
	"empty_unary", "large_unary", "client_streaming", "server_streaming", "ping_pong", "empty_stream",
	"timeout_on_sleeping_server", "cancel_after_begin", "cancel_after_first_response",
	"status_code_and_message", "special_status_message", "custom_metadata",
	"unimplemented_method", "unimplemented_service",
}

// TestIntegrationGRPCInterop runs grpc-go's interop client (the program
// from google.golang.org/grpc/interop/client) through the proxy's h2c
// listener to grpc-go's interop test service (its interop.NewTestServer,
// served on loopback here: the interop server program listens on every
// interface). Each case runs directly first, so a failure through the
// proxy is the proxy's.
func TestIntegrationGRPCInterop(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (builds and runs grpc-go's interop client): skipped with -short")
	}
	client := buildTool(t, "google.golang.org/grpc/interop/client")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, interop.NewTestServer())
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	cfg := oneRoute(ln.Addr().String())
	cfg.Clusters[0].HTTP2 = true
	_, proxyAddr := startProxy(t, cfg)

	for _, tc := range grpcInteropCases {
		for _, target := range []struct{ name, addr string }{{"direct", ln.Addr().String()}, {"through the proxy", proxyAddr}} {
			host, port, _ := net.SplitHostPort(target.addr)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			out, err := exec.CommandContext(ctx, client, "--server_host="+host, "--server_port="+port,
				"--use_tls=false", "--test_case="+tc).CombinedOutput()
			cancel()
			if err != nil {
				t.Errorf("%s, %s: %v\n%s", tc, target.name, err, strings.TrimSpace(string(out)))
			}
		}
	}
}

func TestH2specVerdict(t *testing.T) {
	known := []string{}
	for id := range knownGoH2Failures {
		known = append(known, id)
	}
	runs := func(rs ...[]string) *h2specRuns { return &h2specRuns{runs: rs} }
	extra := append(slices.Clone(known), "http2/5.1/1")
	cases := []struct {
		name     string
		go_, prx *h2specRuns
		errs     int
	}{
		{"same as Go", runs(known), runs(known), 0},
		{"proxy fails a case Go passes, every time", runs(known, known), runs(extra, extra), 1},
		{"proxy failed a case once", runs(known, known), runs(extra, known), 0},
		{"Go failed the case too, once", runs(extra, known), runs(extra, extra), 0},
		{"Go fails an unknown case every time", runs(extra), runs(extra), 1},
		{"Go passed a known failure", runs(known[1:]), runs(known[1:]), 1},
	}
	for _, c := range cases {
		if got := h2specVerdict(c.go_, c.prx); len(got) != c.errs {
			t.Errorf("%s: %d errors %v, want %d", c.name, len(got), got, c.errs)
		}
	}
}
