package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestIntegrationProxyProcess runs `meshbench proxy` as a process with an
// xDS bundle written as YAML, and sends real traffic through it: routing,
// a fault, retries, RBAC-free access, metrics, and a graceful stop.
func TestIntegrationProxyProcess(t *testing.T) {
	integration(t)
	var calls atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := calls.Add(1); r.URL.Path == "/flaky" && n%2 == 1 {
			w.WriteHeader(503)
			return
		}
		io.WriteString(w, "hello "+r.Header.Get("X-Forwarded-Proto"))
	}))
	defer up.Close()
	upHost, upPort, _ := net.SplitHostPort(strings.TrimPrefix(up.URL, "http://"))
	port, admin := freePort(t), freePort(t)
	bundle := fmt.Sprintf(`
version_info: "1"
resources:
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: outbound
  traffic_direction: OUTBOUND
  address: {socket_address: {address: 127.0.0.1, port_value: %d}}
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: outbound
        http_filters:
        - name: envoy.filters.http.fault
          typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault}
        - name: envoy.filters.http.router
          typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
        route_config:
          name: local
          virtual_hosts:
          - name: app
            domains: ["*"]
            routes:
            - match: {prefix: /fault}
              route: {cluster: app}
              typed_per_filter_config:
                envoy.filters.http.fault:
                  "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
                  abort: {http_status: 418, percentage: {numerator: 100}}
            - match: {prefix: /flaky}
              route: {cluster: app, retry_policy: {retry_on: gateway-error, num_retries: 2}}
            - match: {prefix: /}
              route: {cluster: app}
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: app
  type: STATIC
  connect_timeout: 1s
  lb_policy: LEAST_REQUEST
  load_assignment:
    cluster_name: app
    endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %s, port_value: %s}}}}]}]
`, port, upHost, upPort)
	dir := t.TempDir()
	path := filepath.Join(dir, "bundle.yaml")
	if err := os.WriteFile(path, []byte(bundle), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr syncBuilder
	cmd := exec.Command(meshbenchBin, "proxy", "--xds", path, "--node", "test", "--mode", "sidecar", "--admin", fmt.Sprintf("127.0.0.1:%d", admin))
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitFor(t, 10*time.Second, "the proxy to be ready", func() bool {
		if cmd.ProcessState != nil || strings.Contains(stderr.String(), "meshbench:") {
			t.Fatalf("proxy exited:\n%s", stderr.String())
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/ready", admin))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/hello"); code != 200 || body != "hello http" {
		t.Errorf("/hello: %d %q", code, body)
	}
	if code, _ := get("/fault"); code != 418 {
		t.Errorf("/fault: %d, want the injected 418", code)
	}
	for i := 0; i < 4; i++ {
		if code, _ := get("/flaky"); code != 200 {
			t.Errorf("/flaky: %d, want 200 after a retry", code)
		}
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", admin))
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `response_code="418",mode="sidecar"} 1`) {
		t.Errorf("/metrics does not count the fault:\n%s", metrics)
	}
	resp, err = http.Get(fmt.Sprintf("http://127.0.0.1:%d/config_dump", admin))
	if err != nil {
		t.Fatal(err)
	}
	dump, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(dump), "type.googleapis.com/envoy.config.cluster.v3.Cluster") || !strings.Contains(string(dump), `"compiled"`) {
		t.Errorf("/config_dump lacks the xDS resources or the compiled config:\n%.500s", dump)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("proxy exit after SIGTERM: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "listener outbound: 6 requests") {
		t.Errorf("proxy did not report its requests at exit:\n%s", stderr.String())
	}
}

// TestIntegrationProxyBadBundle: an unsupported field stops the proxy at
// start with the field named and exit code 2.
func TestIntegrationProxyBadBundle(t *testing.T) {
	integration(t)
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte(`resources:
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: app
  health_checks: [{timeout: 1s}]
`), 0o644)
	r := meshbench(t, 10*time.Second, "proxy", "--xds", path)
	if r.code != 2 || !strings.Contains(r.stderr, "health_checks: unsupported field envoy.config.cluster.v3.Cluster.health_checks") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

// syncBuilder is a strings.Builder a process writes to while the test
// reads it.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestIntegrationProxyGCPolicy: the proxy takes its runtime policy from
// flags and says the one in effect (read back from the runtime); a bad
// value is exit 2, with the flag named.
func TestIntegrationProxyGCPolicy(t *testing.T) {
	integration(t)
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte("resources: [{\"@type\": type.googleapis.com/nothing}]\n"), 0o644)
	r := meshbench(t, 10*time.Second, "proxy", "--xds", path, "--gogc", "off", "--memory-limit", "33554432")
	// The child inherits this process's CPU set, which sets GOMAXPROCS.
	if want := fmt.Sprintf("runtime: meshbench, GOMAXPROCS %d, GOGC -1 (negative: off), memory limit 33554432 bytes", runtime.GOMAXPROCS(0)); !strings.Contains(r.stderr, want) {
		t.Errorf("exit %d, no runtime policy line in stderr:\n%s", r.code, r.stderr)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--gogc", "0"}, `invalid --gogc "0"`},
		{[]string{"--gogc", "off"}, "invalid --gogc off: without a memory limit"},
		{[]string{"--memory-limit", "-5"}, "invalid --memory-limit -5"},
	} {
		r := meshbench(t, 10*time.Second, append([]string{"proxy", "--xds", path}, c.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, want 2 and %q in stderr:\n%s", c.args, r.code, c.want, r.stderr)
		}
	}
}
