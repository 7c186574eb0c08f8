package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	smimetrics "github.com/servicemeshinterface/smi-sdk-go/pkg/apis/metrics/v1alpha1"

	"github.com/meshbench/meshbench/proxy/xds"
)

// exposition is what a sidecar's /metrics says after 90 requests from app
// (80 answered 200 within 1 ms, 10 answered 503 within 5 ms) and 5 from
// an unknown caller (200 within 0.25 ms), plus an outbound series the
// service's metrics must not count.
const exposition = `# HELP meshbench_requests_total Requests handled by the proxy.
# TYPE meshbench_requests_total counter
meshbench_requests_total{listener="inbound",direction="inbound",source_workload="spiffe://meshbench.local/ns/default/sa/app",destination="inbound|8080",response_code="200",mode="sidecar"} 80
meshbench_requests_total{listener="inbound",direction="inbound",source_workload="spiffe://meshbench.local/ns/default/sa/app",destination="inbound|8080",response_code="503",mode="sidecar"} 10
meshbench_requests_total{listener="inbound",direction="inbound",source_workload="unknown",destination="inbound|8080",response_code="200",mode="sidecar"} 5
meshbench_requests_total{listener="outbound",direction="outbound",source_workload="unknown",destination="outbound|8080||db",response_code="200",mode="sidecar"} 1000
# TYPE meshbench_request_duration_seconds histogram
meshbench_request_duration_seconds_bucket{listener="inbound",direction="inbound",source_workload="spiffe://meshbench.local/ns/default/sa/app",destination="inbound|8080",response_code="200",mode="sidecar",le="0.001"} 80
meshbench_request_duration_seconds_bucket{listener="inbound",direction="inbound",source_workload="spiffe://meshbench.local/ns/default/sa/app",destination="inbound|8080",response_code="200",mode="sidecar",le="0.005"} 80
meshbench_request_duration_seconds_bucket{listener="inbound",direction="inbound",source_workload="spiffe://meshbench.local/ns/default/sa/app",destination="inbound|8080",response_code="200",mode="sidecar",le="+Inf"} 80
meshbench_request_duration_seconds_bucket{listener="inbound",direction="inbound",source_workload="spiffe://meshbench.local/ns/default/sa/app",destination="inbound|8080",response_code="503",mode="sidecar",le="0.001"} 0
meshbench_request_duration_seconds_bucket{listener="inbound",direction="inbound",source_workload="spiffe://meshbench.local/ns/default/sa/app",destination="inbound|8080",response_code="503",mode="sidecar",le="0.005"} 10
meshbench_request_duration_seconds_bucket{listener="inbound",direction="inbound",source_workload="spiffe://meshbench.local/ns/default/sa/app",destination="inbound|8080",response_code="503",mode="sidecar",le="+Inf"} 10
meshbench_request_duration_seconds_bucket{listener="inbound",direction="inbound",source_workload="unknown",destination="inbound|8080",response_code="200",mode="sidecar",le="0.001"} 5
meshbench_request_duration_seconds_bucket{listener="inbound",direction="inbound",source_workload="unknown",destination="inbound|8080",response_code="200",mode="sidecar",le="0.005"} 5
meshbench_request_duration_seconds_bucket{listener="inbound",direction="inbound",source_workload="unknown",destination="inbound|8080",response_code="200",mode="sidecar",le="+Inf"} 5
meshbench_request_duration_seconds_bucket{listener="outbound",direction="outbound",source_workload="unknown",destination="outbound|8080||db",response_code="200",mode="sidecar",le="+Inf"} 1000
`

// TestTrafficMetricsAPI serves SMI's Traffic Metrics API from a proxy's
// Prometheus metrics: counts, failures (5xx), quantiles interpolated
// from the buckets, and the edges by calling workload, in the upstream
// Go types; an unknown service or namespace is 404.
func TestTrafficMetricsAPI(t *testing.T) {
	proxyMetrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, exposition) }))
	defer proxyMetrics.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	model := &Model{
		Services: []Service{{Name: "api", Inbound: []ListenerRef{{Node: "api-sidecar", Listener: "inbound"}}}},
		Accounts: map[string]string{"app": "spiffe://meshbench.local/ns/default/sa/app"},
		Metrics:  map[string]string{"api-sidecar": proxyMetrics.URL + "/metrics"},
	}
	plane, err := NewPlane(ctx, New(ctx), model, map[string]*xds.Bundle{"api-sidecar": {}})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(plane.Handler())
	defer api.Close()
	get := func(path string, v any) int {
		t.Helper()
		resp, err := http.Get(api.URL + "/apis/metrics.smi-spec.io/v1alpha1/namespaces/" + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if v != nil && resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode
	}
	value := func(ms []*smimetrics.Metric) map[string]float64 {
		out := map[string]float64{}
		for _, m := range ms {
			out[m.Name] = m.Value.AsApproximateFloat64()
		}
		return out
	}

	var tm smimetrics.TrafficMetrics
	if code := get("default/deployments/api", &tm); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if tm.Kind != "TrafficMetrics" || tm.APIVersion != "metrics.smi-spec.io/v1alpha1" || tm.Resource.Name != "api" || tm.Resource.Kind != "Deployment" {
		t.Errorf("object: %+v", tm)
	}
	got := value(tm.Metrics)
	// 95 requests: rank 0.5*95 = 47.5 of the 85 under 1 ms -> 0.56 ms;
	// rank 0.99*95 = 94.05 falls between 85 (1 ms) and 95 (5 ms).
	want := map[string]float64{"success_count": 85, "failure_count": 10,
		"p50_response_latency": 1000 * 0.001 * 47.5 / 85, "p99_response_latency": 1000 * (0.001 + 0.004*(94.05-85)/10)}
	for k, v := range want {
		if math.Abs(got[k]-v) > 0.002 {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}

	var edges smimetrics.TrafficMetricsList
	if code := get("default/deployments/api/edges", &edges); code != http.StatusOK {
		t.Fatalf("edges: status %d", code)
	}
	var seen []string
	for _, it := range edges.Items {
		m := value(it.Metrics)
		seen = append(seen, fmt.Sprintf("%s %s %v/%v", it.Edge.Direction, it.Edge.Resource.Name, m["success_count"], m["failure_count"]))
	}
	if s := strings.Join(seen, "; "); s != "from app 80/10; from unknown 5/0" {
		t.Errorf("edges: %s", s)
	}
	if code := get("default/deployments/nope", nil); code != http.StatusNotFound {
		t.Errorf("unknown service: %d", code)
	}
	if code := get("prod/deployments/api", nil); code != http.StatusNotFound {
		t.Errorf("other namespace: %d", code)
	}
}

// TestTrafficCountsGRPCStatus: a gRPC call that failed is a failure even
// though its HTTP status is 200; one that succeeded is a success.
func TestTrafficCountsGRPCStatus(t *testing.T) {
	series, err := parseExposition(strings.NewReader(`meshbench_requests_total{listener="inbound",response_code="200",grpc_response_status="14",mode="sidecar"} 7
meshbench_requests_total{listener="inbound",response_code="200",grpc_response_status="0",mode="sidecar"} 5
meshbench_requests_total{listener="inbound",response_code="200",mode="sidecar"} 3
`))
	if err != nil {
		t.Fatal(err)
	}
	tr := &traffic{buckets: map[float64]float64{}}
	for _, s := range series {
		tr.add(s)
	}
	if tr.success != 8 || tr.failure != 7 {
		t.Errorf("success %v failure %v, want 8 and 7", tr.success, tr.failure)
	}
}
