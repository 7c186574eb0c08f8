package runner

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshbench/meshbench/meshes/none"
	"github.com/meshbench/meshbench/scenarios"
)

const exposition = `# TYPE meshbench_requests_total counter
meshbench_requests_total{direction="outbound",response_code="200"} 90
meshbench_requests_total{direction="outbound",response_code="503"} 7
meshbench_requests_total{direction="inbound",response_code="503"} 5
# TYPE meshbench_request_duration_seconds histogram
meshbench_request_duration_seconds_bucket{direction="outbound",le="0.1"} 95
meshbench_request_duration_seconds_bucket{direction="outbound",le="+Inf"} 97
meshbench_request_duration_seconds_sum{direction="outbound"} 1.5
meshbench_request_duration_seconds_count{direction="outbound"} 97
# TYPE up gauge
up 1
`

// TestSumMetric: a metric's samples whose labels include the probe's are
// summed; a histogram's _count and _sum are read from its family.
func TestSumMetric(t *testing.T) {
	for _, c := range []struct {
		metric string
		labels map[string]string
		want   float64
	}{
		{"meshbench_requests_total", nil, 102},
		{"meshbench_requests_total", map[string]string{"response_code": "503"}, 12},
		{"meshbench_requests_total", map[string]string{"response_code": "503", "direction": "outbound"}, 7},
		{"meshbench_request_duration_seconds_count", nil, 97},
		{"meshbench_request_duration_seconds_sum", map[string]string{"direction": "outbound"}, 1.5},
		{"up", nil, 1},
		{"not_there", nil, 0},
	} {
		got, found, err := sumMetric(strings.NewReader(exposition), c.metric, c.labels)
		if err != nil || got != c.want || found != (c.metric != "not_there") {
			t.Errorf("%s%v: %g (found %v), %v; want %g", c.metric, c.labels, got, found, err, c.want)
		}
	}
	if _, _, err := sumMetric(strings.NewReader("not { exposition"), "up", nil); err == nil {
		t.Errorf("a malformed exposition read without an error")
	}
}

// TestMetricsProbe reads two real endpoints once a second: a rate is the
// summed increase per second from the second reading on, and an endpoint
// that stops answering fails the reading, naming it.
func TestMetricsProbe(t *testing.T) {
	var n atomic.Int64
	counter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		// 10 more 503s at each scrape.
		fmt.Fprintf(w, "# TYPE meshbench_requests_total counter\nmeshbench_requests_total{response_code=\"503\"} %d\n", 10*n.Add(1))
	}))
	defer counter.Close()
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	p := scenarios.Probe{Name: "few-5xx", Type: scenarios.ProbePrometheus, Metric: "meshbench_requests_total",
		Labels: map[string]string{"response_code": "503"}, Rate: true, Comparator: &scenarios.Comparator{Criteria: "<=", Value: "100"}}
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	rd := &probeReadings{}
	if err := metricsProbe(map[string]string{"a": counter.URL}, p, rd)(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	got := rd.sorted()
	if len(got) != 2 {
		t.Fatalf("readings %+v: want two (the first only starts the rate)", got)
	}
	for _, r := range got {
		// About 10 a second: anything from 5 to 20 shows it is a rate.
		var v float64
		fmt.Sscan(r.Value, &v)
		if !r.OK || v < 5 || v > 20 || r.Probe != "few-5xx" {
			t.Errorf("reading %+v: want about 10 a second, held", r)
		}
	}
	rd = &probeReadings{}
	ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_ = metricsProbe(map[string]string{"a": counter.URL, "b": gone.URL}, p, rd)(ctx, time.Now())
	if got := rd.sorted(); len(got) != 1 || got[0].OK || !strings.HasPrefix(got[0].Error, "b: ") {
		t.Errorf("with an endpoint gone: %+v, want a failed reading naming b", got)
	}
	// Another mesh's metric, which no proxy exposes, fails rather than
	// reading 0.
	p.Metric = "haproxy_backend_http_responses_total"
	rd = &probeReadings{}
	ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_ = metricsProbe(map[string]string{"a": counter.URL}, p, rd)(ctx, time.Now())
	if got := rd.sorted(); len(got) != 1 || got[0].OK || got[0].Error != "no proxy exposes haproxy_backend_http_responses_total (a)" {
		t.Errorf("with a metric nobody has: %+v", got)
	}
}

// TestCommandProbe runs real commands: the exit status, the comparator on
// the trimmed output, the timeout and the environment each decide.
func TestCommandProbe(t *testing.T) {
	sl := slot{mesh: none.New(), mode: scenarios.Baseline}
	for _, c := range []struct {
		name    string
		command []string
		cmp     *scenarios.Comparator
		ok      bool
		value   string
		err     string
	}{
		{"exits-0", []string{"true"}, nil, true, "", ""},
		{"exits-1", []string{"sh", "-c", "echo broken >&2; exit 3"}, nil, false, "", "exit status 3: broken"},
		{"compares", []string{"sh", "-c", "echo '  42 '"}, &scenarios.Comparator{Criteria: ">=", Value: "40"}, true, "42", ""},
		{"env", []string{"sh", "-c", "echo $MESHBENCH_MESH/$MESHBENCH_MODE"}, &scenarios.Comparator{Criteria: "matches", Value: "^none/baseline$"}, true, "none/baseline", ""},
		{"slow", []string{"sleep", "5"}, nil, false, "", "did not end within 200ms"},
		// A shell's children go with it: at the timeout, and when it
		// leaves one running in the background.
		{"slow-child", []string{"sh", "-c", "sleep 7.31 & wait"}, nil, false, "", "did not end within 200ms"},
		{"background", []string{"sh", "-c", "sleep 7.32 >/dev/null 2>&1 &"}, nil, true, "", ""},
	} {
		p := scenarios.Probe{Name: c.name, Type: scenarios.ProbeCommand, Command: c.command, Comparator: c.cmp, Timeout: scenarios.Duration(200 * time.Millisecond)}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		rd := &probeReadings{}
		start := time.Now()
		_ = commandProbe(p, sl, rd)(ctx, start)
		cancel()
		got := rd.sorted()
		if len(got) != 1 || got[0].OK != c.ok || got[0].Value != c.value || got[0].Error != c.err {
			t.Errorf("%s: %+v, want ok %v, value %q, error %q", c.name, got, c.ok, c.value, c.err)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("%s: the probe took %s to stop", c.name, took)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if cmd, _ := os.ReadFile(p); strings.HasPrefix(string(cmd), "sleep\x007.3") {
			t.Errorf("a command probe's child outlived it: %s %q", p, cmd)
		}
	}
}
