package runner

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/runner/workload"
	"github.com/meshbench/meshbench/scenarios"
)

// probeReadings collects the active probes' readings side by side.
type probeReadings struct {
	mu   sync.Mutex
	list []results.ProbeReading
}

func (p *probeReadings) add(r results.ProbeReading) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.list = append(p.list, r)
}

// sorted is the readings in time order; call it once the probes ended.
func (p *probeReadings) sorted() []results.ProbeReading {
	p.mu.Lock()
	defer p.mu.Unlock()
	sort.SliceStable(p.list, func(i, j int) bool { return p.list[i].At < p.list[j].At })
	return p.list
}

// maxReadingValue bounds a reading's text (a command's output) in the
// results.
const maxReadingValue = 200

// shorten trims a command's output for the results.
func shorten(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > maxReadingValue {
		return s[:maxReadingValue] + "..."
	}
	return s
}

// activeProbes are the window's activities of the game day's http,
// prometheus and command probes, reading into rd, and the probes (of any
// type) that cannot judge this row, with the reason.
func (r *run) activeProbes(d *deployment, sl slot, rd *probeReadings) ([]activity, map[string]string) {
	var acts []activity
	na := map[string]string{}
	for _, p := range r.Scenario.Probes {
		if p.Mesh != "" && p.Mesh != sl.mesh.Name() {
			na[p.Name] = fmt.Sprintf("judges %s's rows only", p.Mesh)
			continue
		}
		switch p.Type {
		case scenarios.ProbeHTTP:
			acts = append(acts, r.httpProbe(d, p, rd))
		case scenarios.ProbePrometheus:
			if len(d.dep.ProxyMetrics) == 0 {
				na[p.Name] = fmt.Sprintf("%s in %s mode has no proxy serving Prometheus metrics", sl.mesh.Name(), sl.mode)
				continue
			}
			acts = append(acts, metricsProbe(d.dep.ProxyMetrics, p, rd))
		case scenarios.ProbeCommand:
			acts = append(acts, commandProbe(p, sl, rd))
		}
	}
	return acts, na
}

// httpProbe sends the probe's request once a second from a process on
// the client's node, enrolled as the load client is (its node's proxy or
// its library), to the service the load calls.
func (r *run) httpProbe(d *deployment, p scenarios.Probe, rd *probeReadings) activity {
	return func(ctx context.Context, windowStart time.Time) error {
		t := d.dep.Target
		client := r.Scenario.Topology.Client.Name
		// Stopped when the window ends; --for only bounds it.
		args := []string{"workload", "probe", "--url", t.URL, "--path", p.Path, "--method", p.Method,
			"--every", scenarios.ProbeInterval.String(), "--for", (r.Scenario.Load.Duration.D() + time.Minute).String(),
			"--timeout", p.Timeout.String()}
		if t.Host != "" {
			args = append(args, "--host", t.Host)
		}
		args = append(args, t.ClientArgs...)
		name := client + "-probe-" + p.Name
		log, err := os.Create(filepath.Join(d.logDir, name+".stdout.log"))
		if err != nil {
			return err
		}
		defer log.Close()
		pr, pw := io.Pipe()
		defer pr.Close()
		read := make(chan struct{})
		go func() {
			defer close(read)
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				_, _ = log.Write(append(sc.Bytes(), '\n'))
				var w workload.Reading
				if json.Unmarshal(sc.Bytes(), &w) != nil {
					continue
				}
				reading := results.ProbeReading{Probe: p.Name, At: w.Time.Sub(windowStart).Seconds(), Error: w.Error,
					OK: w.Error == "" && w.Code == p.Status}
				if w.Error == "" {
					reading.Value = fmt.Sprintf("%d in %.1f ms", w.Code, w.Ms)
				}
				rd.add(reading)
			}
			_, _ = io.Copy(io.Discard, pr)
		}()
		job, proc, err := r.startJob(ctx, d.logDir, client, ProcessSpec{Name: name, Class: results.ClassLoadGen, Args: args,
			Stdout: pw, CPUs: cpusFor(results.ClassLoadGen)})
		if err != nil {
			pw.Close()
			<-read
			if ctx.Err() != nil {
				return nil // the window ended first
			}
			return fmt.Errorf("probe %s: %w", p.Name, err)
		}
		select {
		case <-ctx.Done():
		case <-proc.Done():
		}
		_ = job.Stop(context.WithoutCancel(ctx))
		pw.Close()
		<-read
		if ctx.Err() == nil && proc.Err() != nil {
			return fmt.Errorf("probe %s ended before the window: %v (see %s)", p.Name, proc.Err(), filepath.Join(d.logDir, name+".stderr.log"))
		}
		return nil
	}
}

// everySecond calls read once a second until ctx ends (a call the end
// cut short is not recorded), recording what it returns (ok false: no
// reading) at the time it says the reading is of.
func everySecond(ctx context.Context, rd *probeReadings, windowStart time.Time, read func(at time.Time) (r results.ProbeReading, of time.Time, ok bool)) error {
	tick := time.NewTicker(scenarios.ProbeInterval)
	defer tick.Stop()
	for {
		r, of, ok := read(time.Now())
		if ctx.Err() != nil {
			return nil
		}
		if ok {
			r.At = of.Sub(windowStart).Seconds()
			rd.add(r)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// metricsProbe reads the probe's metric from every proxy once a second
// (side by side, all within the probe's timeout) and compares their sum,
// or with Rate the sum of their increases per second since the last
// reading (a proxy whose counter went back, being restarted, counts from
// 0), a reading of the interval's middle.
func metricsProbe(urls map[string]string, p scenarios.Probe, rd *probeReadings) activity {
	return func(ctx context.Context, windowStart time.Time) error {
		client := &http.Client{}
		names := slices.Sorted(maps.Keys(urls))
		var prev map[string]float64
		var prevAt time.Time
		return everySecond(ctx, rd, windowStart, func(at time.Time) (results.ProbeReading, time.Time, bool) {
			r := results.ProbeReading{Probe: p.Name}
			cur, exposed, err := scrapeAll(ctx, client, urls, names, p)
			if err != nil {
				r.Error = err.Error()
				prev = nil
				return r, at, true
			}
			if !exposed {
				// A name no proxy knows (another mesh's metric) is an
				// error, not a 0 that would always hold.
				r.Error = fmt.Sprintf("no proxy exposes %s (%s)", p.Metric, strings.Join(names, ", "))
				return r, at, true
			}
			var value float64
			for _, n := range names {
				v := cur[n]
				if p.Rate && prev != nil {
					if v -= prev[n]; v < 0 {
						v = cur[n]
					}
					v /= at.Sub(prevAt).Seconds()
				}
				value += v
			}
			first := p.Rate && prev == nil
			of := at
			if p.Rate && !first {
				of = prevAt.Add(at.Sub(prevAt) / 2)
			}
			prev, prevAt = cur, at
			if first {
				return r, at, false // a rate needs two readings
			}
			r.Value = strconv.FormatFloat(value, 'g', 6, 64)
			ok, err := p.Comparator.Compare(r.Value)
			r.OK = ok && err == nil
			if err != nil {
				r.Error = err.Error()
			}
			return r, of, true
		})
	}
}

// scrapeAll reads the metric from every proxy side by side, within
// MaxProbeTimeout: each proxy's sum, and whether any exposes the metric.
func scrapeAll(ctx context.Context, client *http.Client, urls map[string]string, names []string, p scenarios.Probe) (map[string]float64, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, scenarios.MaxProbeTimeout)
	defer cancel()
	type got struct {
		v     float64
		found bool
		err   error
	}
	res := make([]got, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i].v, res[i].found, res[i].err = scrapeMetric(ctx, client, urls[n], p.Metric, p.Labels)
		}()
	}
	wg.Wait()
	cur := map[string]float64{}
	exposed := false
	for i, n := range names {
		if res[i].err != nil {
			return nil, false, fmt.Errorf("%s: %v", n, res[i].err)
		}
		cur[n], exposed = res[i].v, exposed || res[i].found
	}
	return cur, exposed, nil
}

// scrapeMetric reads a Prometheus text exposition and sums the samples of
// metric whose labels include labels: a counter's, a gauge's or an
// untyped value; of a histogram or summary, NAME_count and NAME_sum.
// found says the exposition has the metric at all.
func scrapeMetric(ctx context.Context, client *http.Client, url, metric string, labels map[string]string) (sum float64, found bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, false, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return sumMetric(resp.Body, metric, labels)
}

// sumMetric is scrapeMetric's reading of an exposition.
func sumMetric(r io.Reader, metric string, labels map[string]string) (sum float64, found bool, err error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return 0, false, err
	}
	family, part := metric, ""
	if _, ok := families[metric]; !ok {
		for _, suffix := range []string{"_count", "_sum"} {
			if base, cut := strings.CutSuffix(metric, suffix); cut && families[base] != nil {
				family, part = base, suffix
			}
		}
	}
	found = families[family] != nil
	for _, m := range families[family].GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		if !matches(have, labels) {
			continue
		}
		switch {
		case part == "_count" && m.GetHistogram() != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case part == "_sum" && m.GetHistogram() != nil:
			sum += m.GetHistogram().GetSampleSum()
		case part == "_count" && m.GetSummary() != nil:
			sum += float64(m.GetSummary().GetSampleCount())
		case part == "_sum" && m.GetSummary() != nil:
			sum += m.GetSummary().GetSampleSum()
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		case m.GetUntyped() != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	// A metric with no matching sample yet (no 503 answered so far) reads
	// 0.
	return sum, found, nil
}

func matches(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// commandProbe runs the probe's command on meshbench's host once a second:
// it holds when the command exits 0 within its timeout and its trimmed
// output meets the comparator, if any.
func commandProbe(p scenarios.Probe, sl slot, rd *probeReadings) activity {
	return func(ctx context.Context, windowStart time.Time) error {
		return everySecond(ctx, rd, windowStart, func(at time.Time) (results.ProbeReading, time.Time, bool) {
			cctx, cancel := context.WithTimeout(ctx, p.Timeout.D())
			defer cancel()
			cmd := exec.CommandContext(cctx, p.Command[0], p.Command[1:]...)
			// Its own process group, killed whole at the timeout: a
			// shell's children (sh -c "curl ...") must not outlive it.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
			cmd.Env = append(os.Environ(), "MESHBENCH_MESH="+sl.mesh.Name(), "MESHBENCH_MODE="+string(sl.mode),
				"MESHBENCH_SECOND="+strconv.FormatFloat(at.Sub(windowStart).Seconds(), 'f', 1, 64))
			var out, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &stderr
			cmd.WaitDelay = 100 * time.Millisecond
			err := cmd.Run()
			// And whatever it left running in the background.
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			text := strings.TrimSpace(out.String())
			r := results.ProbeReading{Probe: p.Name, Value: shorten(text)}
			switch {
			case errors.Is(cctx.Err(), context.DeadlineExceeded):
				r.Error = fmt.Sprintf("did not end within %s", p.Timeout)
			case err != nil:
				r.Error = strings.TrimSpace(err.Error() + ": " + shorten(stderr.String()))
			case p.Comparator != nil:
				ok, cerr := p.Comparator.Compare(text)
				r.OK = ok && cerr == nil
				if cerr != nil {
					r.Error = cerr.Error()
				}
			default:
				r.OK = true
			}
			return r, at, true
		})
	}
}
