package controlplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	smimetrics "github.com/servicemeshinterface/smi-sdk-go/pkg/apis/metrics/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshbench/meshbench/proxy"
)

// The control plane serves SMI's Traffic Metrics API (metrics.smi-spec.io
// v1alpha1) from its proxies' own Prometheus metrics: for a service, what
// its inbound listeners handled since the proxies started, in total and by
// calling workload (edges "from"). Success is any response but a 5xx (and
// but none at all, code 0), as Linkerd's SMI adapter counts it; latencies
// are interpolated from the proxies' histogram buckets, as Prometheus's
// histogram_quantile does.

// MetricsNamespace is the namespace the metrics API names the mesh's
// workloads in.
const MetricsNamespace = "default"

// ErrNoMetrics says the mesh's deployment has no metrics source for a
// service (proxyless workloads export none).
var ErrNoMetrics = errors.New("no proxy reports this service's traffic")

// errUnknownService says the metrics API was asked for a service the mesh
// does not have.
var errUnknownService = errors.New("no service")

// maxExposition bounds one proxy's metrics.
const maxExposition = 16 << 20

// promSeries is one series of the proxies' exposition: a counter's value,
// or a histogram's cumulative bucket counts by upper bound (+Inf
// included).
type promSeries struct {
	name    string
	labels  map[string]string
	value   float64
	buckets map[float64]float64
}

// parseExposition reads the Prometheus text format the proxy writes, with
// Prometheus's own parser.
func parseExposition(r io.Reader) ([]promSeries, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	var out []promSeries
	for name, f := range families {
		for _, m := range f.GetMetric() {
			s := promSeries{name: name, labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.GetHistogram() != nil:
				h := m.GetHistogram()
				s.buckets = map[float64]float64{math.Inf(1): float64(h.GetSampleCount())}
				for _, b := range h.GetBucket() {
					s.buckets[b.GetUpperBound()] = float64(b.GetCumulativeCount())
				}
			case m.GetCounter() != nil:
				s.value = m.GetCounter().GetValue()
			default:
				s.value = m.GetUntyped().GetValue()
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// traffic is what the inbound series of a service add up to.
type traffic struct {
	success, failure float64
	buckets          map[float64]float64 // upper bound -> cumulative count
}

func (t *traffic) add(s promSeries) {
	switch s.name {
	case "meshbench_requests_total":
		code, _ := strconv.Atoi(s.labels["response_code"])
		grpc, isGRPC := s.labels["grpc_response_status"]
		if code == 0 || code >= 500 || isGRPC && grpc != "0" {
			t.failure += s.value
		} else {
			t.success += s.value
		}
	case "meshbench_request_duration_seconds":
		for le, n := range s.buckets {
			t.buckets[le] += n
		}
	}
}

// quantile interpolates q (0..1) from the cumulative buckets, in seconds,
// as Prometheus's histogram_quantile: linearly within the bucket the rank
// falls in, the highest finite bound when it falls in +Inf.
func (t *traffic) quantile(q float64) float64 {
	bounds := make([]float64, 0, len(t.buckets))
	for b := range t.buckets {
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	if len(bounds) == 0 {
		return 0
	}
	total := t.buckets[bounds[len(bounds)-1]]
	if total == 0 {
		return 0
	}
	rank := q * total
	prevBound, prevCount := 0.0, 0.0
	for _, b := range bounds {
		c := t.buckets[b]
		if c >= rank {
			if math.IsInf(b, 1) {
				return prevBound
			}
			if c == prevCount {
				return b
			}
			return prevBound + (b-prevBound)*(rank-prevCount)/(c-prevCount)
		}
		prevBound, prevCount = b, c
	}
	return prevBound
}

func (t *traffic) metrics() []*smimetrics.Metric {
	out := []*smimetrics.Metric{}
	for _, q := range []struct {
		name string
		q    float64
	}{{"p99_response_latency", 0.99}, {"p90_response_latency", 0.90}, {"p50_response_latency", 0.50}} {
		m := &smimetrics.Metric{Name: q.name, Unit: smimetrics.MilliSeconds}
		m.Set(t.quantile(q.q) * 1000)
		out = append(out, m)
	}
	for _, c := range []struct {
		name string
		v    float64
	}{{"success_count", t.success}, {"failure_count", t.failure}} {
		m := &smimetrics.Metric{Name: c.name}
		m.Set(c.v)
		out = append(out, m)
	}
	return out
}

// scrapeTimeout bounds reading one proxy's metrics.
const scrapeTimeout = 5 * time.Second

// inbound scrapes the proxies that take name's requests and returns their
// inbound series for it, from every caller and by caller.
func (p *Plane) inbound(ctx context.Context, name string) (*traffic, map[string]*traffic, error) {
	var svc *Service
	for i := range p.model.Services {
		if p.model.Services[i].Name == name {
			svc = &p.model.Services[i]
		}
	}
	if svc == nil {
		return nil, nil, fmt.Errorf("%w %q", errUnknownService, name)
	}
	accounts := map[string]string{}
	for acct, id := range p.model.Accounts {
		accounts[id] = acct
	}
	total := &traffic{buckets: map[float64]float64{}}
	from := map[string]*traffic{}
	scraped := 0
	for _, ref := range svc.Inbound {
		url, ok := p.model.Metrics[ref.Node]
		if !ok {
			continue
		}
		series, err := scrape(ctx, p.scrapeClient(), url)
		if err != nil {
			return nil, nil, fmt.Errorf("proxy %s: %w", ref.Node, err)
		}
		scraped++
		for _, s := range series {
			if s.labels["listener"] != ref.Listener || (ref.Cluster != "" && s.labels["destination"] != ref.Cluster) {
				continue
			}
			total.add(s)
			caller := accounts[s.labels["source_workload"]]
			if caller == "" {
				caller = "unknown"
			}
			if from[caller] == nil {
				from[caller] = &traffic{buckets: map[float64]float64{}}
			}
			from[caller].add(s)
		}
	}
	if scraped == 0 {
		return nil, nil, ErrNoMetrics
	}
	return total, from, nil
}

// scrapeClient is the HTTP client of the scrapes, its connections marked
// as the model says.
func (p *Plane) scrapeClient() *http.Client {
	p.scrapeOnce.Do(func() {
		d := proxy.MarkedDialer(p.model.MetricsMark, scrapeTimeout)
		p.scraper = &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 2, IdleConnTimeout: time.Minute}}
	})
	return p.scraper
}

func scrape(ctx context.Context, client *http.Client, url string) ([]promSeries, error) {
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxExposition+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxExposition {
		return nil, fmt.Errorf("GET %s: more than %d bytes of metrics", url, maxExposition)
	}
	return parseExposition(bytes.NewReader(data))
}

func deployment(name string) *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "Deployment", Namespace: MetricsNamespace, Name: name}
}

// trafficMetrics is the resource's TrafficMetrics (edge: to anything).
func (p *Plane) trafficMetrics(ctx context.Context, name string) (*smimetrics.TrafficMetrics, error) {
	total, _, err := p.inbound(ctx, name)
	if err != nil {
		return nil, err
	}
	return p.trafficMetricsOf(name, &smimetrics.Edge{Direction: smimetrics.To, Resource: &corev1.ObjectReference{}}, total), nil
}

// trafficEdges lists the resource's TrafficMetrics per calling workload.
func (p *Plane) trafficEdges(ctx context.Context, name string) (*smimetrics.TrafficMetricsList, error) {
	_, from, err := p.inbound(ctx, name)
	if err != nil {
		return nil, err
	}
	list := &smimetrics.TrafficMetricsList{
		TypeMeta: metav1.TypeMeta{APIVersion: smimetrics.SchemeGroupVersion.String(), Kind: "TrafficMetricsList"},
		Resource: deployment(name), Items: []*smimetrics.TrafficMetrics{},
	}
	for _, caller := range slices.Sorted(maps.Keys(from)) {
		list.Items = append(list.Items, p.trafficMetricsOf(name, &smimetrics.Edge{Direction: smimetrics.From, Resource: deployment(caller)}, from[caller]))
	}
	return list, nil
}

func (p *Plane) trafficMetricsOf(name string, edge *smimetrics.Edge, t *traffic) *smimetrics.TrafficMetrics {
	now := time.Now()
	p.mu.Lock()
	since := now
	if len(p.history) > 0 {
		since = p.history[0].At
	}
	p.mu.Unlock()
	return &smimetrics.TrafficMetrics{
		TypeMeta:   metav1.TypeMeta{APIVersion: smimetrics.SchemeGroupVersion.String(), Kind: "TrafficMetrics"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: MetricsNamespace},
		Interval:   &smimetrics.Interval{Timestamp: metav1.NewTime(now), Window: metav1.Duration{Duration: now.Sub(since).Round(time.Millisecond)}},
		Resource:   deployment(name),
		Edge:       edge,
		Metrics:    t.metrics(),
	}
}
