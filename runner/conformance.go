package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/reports"
	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/runner/workload"
	"github.com/meshbench/meshbench/scenarios"
)

// ConformanceOptions describe a conformance run of the SMI suite.
type ConformanceOptions struct {
	Options
	// Targets are the (mesh, mode) pairs to test.
	Targets []scenarios.MeshRef
	// Requests is how many requests each check sends.
	Requests int
	// Alpha is the false-failure rate of each split check's binomial test.
	Alpha float64
	// Mutate (test only) makes the mesh's control plane break one
	// translation on purpose.
	Mutate string
}

// The conformance application, as the established suite's: app-a calls
// app-b (access, specs) and app-svc, a service whose selector covers
// app-b's and app-c's workloads (split). Every workload is its own
// service account.
const (
	confA, confB, confC, confRoot = "app-a", "app-b", "app-c", "app-svc"
)

// ConformanceTopology is the suite's application.
func ConformanceTopology() scenarios.Topology {
	return scenarios.Topology{
		Client: scenarios.Client{Name: confA},
		Services: []scenarios.Service{
			{Name: confRoot, Selects: []string{confB, confC}},
			{Name: confB},
			{Name: confC},
		},
	}
}

// Conformance runs the SMI conformance suite (traffic-access,
// traffic-specs, traffic-split: the established suite's steps) against
// every target, each spec on a fresh deployment, and returns each
// target's outcome. Outcomes are complete before the next target starts;
// on error those finished are returned with it.
func Conformance(ctx context.Context, o ConformanceOptions) ([]*results.Conformance, error) {
	if o.Log == nil {
		o.Log = nopLogger{}
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	s := &scenarios.Scenario{APIVersion: scenarios.APIVersion, Name: "conformance-smi", Platform: scenarios.DefaultPlatform,
		Topology: ConformanceTopology(), Meshes: o.Targets, Trials: 1, Order: scenarios.OrderRotate}
	s.Load.Protocol = scenarios.DefaultProtocol
	o.Scenario = s
	var err error
	if o.OutDir, err = filepath.Abs(o.OutDir); err != nil {
		return nil, err
	}
	slots, skipped, err := Plan(s, o.Meshes)
	if err != nil {
		return nil, err
	}
	r := &run{Options: o.Options, slots: slots, mutate: o.Mutate, conformN: o.Requests}
	defer r.down(ctx)
	if r.nodes, err = o.Platform.Up(ctx, s.Topology.Workloads()); err != nil {
		return nil, fmt.Errorf("platform up: %w", err)
	}
	if err := r.expose(ctx); err != nil {
		return nil, err
	}
	if err := r.writeManifest(); err != nil {
		return nil, err
	}
	var out []*results.Conformance
	for _, sl := range r.slots {
		c := &results.Conformance{Suite: "smi", Mesh: sl.mesh.Name(), Mode: string(sl.mode), Start: time.Now().UTC(), Mutate: o.Mutate}
		for _, spec := range smiSpecs {
			r.Log.Logf("conformance: %s %s", sl.key(), spec.name)
			outcome, unsupported, err := r.conformSpec(ctx, o, sl, spec)
			if err != nil {
				return out, fmt.Errorf("%s %s: %w", sl.key(), spec.name, err)
			}
			if c.Reason == "" {
				c.Reason = unsupported
			}
			c.Specs = append(c.Specs, *outcome)
		}
		out = append(out, c)
		if err := results.WriteJSON(filepath.Join(o.OutDir, results.ConformanceFile), out); err != nil {
			return out, err
		}
	}
	// A (mesh, mode) whose data plane cannot carry the suite's HTTP
	// probes is reported NONE with the reason, not left out.
	for _, u := range skipped {
		c := &results.Conformance{Suite: "smi", Mesh: u.Mesh, Mode: u.Mode, Start: time.Now().UTC(), Mutate: o.Mutate, Reason: u.Reason}
		for _, spec := range smiSpecs {
			so := results.SpecOutcome{Spec: spec.name, Version: spec.version, Capability: results.CapabilityNone}
			for i, st := range spec.steps {
				so.Cases = append(so.Cases, results.CaseOutcome{Step: i + 1, Name: st.name, Assertion: st.assertion, Message: "not run: " + u.Reason})
			}
			c.Specs = append(c.Specs, so)
		}
		out = append(out, c)
	}
	if len(skipped) > 0 {
		if err := results.WriteJSON(filepath.Join(o.OutDir, results.ConformanceFile), out); err != nil {
			return out, err
		}
	}
	return out, nil
}

// smiSpec is one spec of the suite: its steps, and whether its
// deployment denies what no TrafficTarget allows.
type smiSpec struct {
	name, version string
	denyByDefault bool
	steps         []smiStep
}

// smiStep is one step: an assertion, checked by run on the live
// deployment (nil for "the application is up", which deploying checks).
type smiStep struct {
	name, assertion string
	run             func(ctx context.Context, c *conformer) (string, error)
}

// conformer is a spec's live deployment and what its checks need.
type conformer struct {
	r     *run
	o     ConformanceOptions
	sl    slot
	d     *deployment
	probe func(ctx context.Context, to, method, path string) (workload.ProbeResult, error)
}

var smiSpecs = []smiSpec{
	{name: "traffic-access", version: "access.smi-spec.io/v1alpha3", denyByDefault: true, steps: []smiStep{
		{"kindKnown", "TrafficTarget and TCPRoute are kinds the mesh expresses", kindKnown("TrafficTarget", "TCPRoute")},
		{"appUp", "the application (app-a, app-b, app-c) is up in the mesh", nil},
		{"trafficDefault", "with no TrafficTarget, app-a -> app-b is denied", blocked("/echo")},
		{"install", "TCPRoute and a TrafficTarget (app-a -> app-b) are in force at every client", apply(accessTarget)},
		{"trafficAllowed", "app-a -> app-b is allowed, and app-b serves it", allowed("/echo")},
		{"delete", "with the TrafficTarget deleted, no policy is in force at any client", apply(func() []scenarios.Policy { return nil })},
		{"trafficBlocked", "app-a -> app-b is denied again", blocked("/echo")},
	}},
	{name: "traffic-specs", version: "specs.smi-spec.io/v1alpha4", denyByDefault: true, steps: []smiStep{
		{"kindKnown", "HTTPRouteGroup is a kind the mesh expresses", kindKnown("HTTPRouteGroup", "TrafficTarget")},
		{"appUp", "the application (app-a, app-b, app-c) is up in the mesh", nil},
		{"install", "an HTTPRouteGroup (/metrics, every method) and a TrafficTarget on it are in force", apply(func() []scenarios.Policy { return specsPolicy(`/metrics`, "*") })},
		{"trafficPath", "GET /metrics is allowed; GET /echo is denied", pathChecks(
			pathCheck{"GET", "/metrics", true}, pathCheck{"GET", "/echo", false})},
		{"install", "the HTTPRouteGroup now allows every path for GET alone", apply(func() []scenarios.Policy { return specsPolicy(`.*`, "GET") })},
		{"trafficMethod", "GET /echo is allowed; POST /echo is denied", pathChecks(
			pathCheck{"GET", "/echo", true}, pathCheck{"POST", "/echo", false})},
	}},
	{name: "traffic-split", version: "split.smi-spec.io/v1alpha4", steps: []smiStep{
		{"kindKnown", "TrafficSplit is a kind the mesh expresses", kindKnown("TrafficSplit")},
		{"appUp", "the application (app-a, app-svc over app-b and app-c) is up in the mesh", nil},
		{"trafficDefault", "with no TrafficSplit, both app-b and app-c serve app-svc (evenly, by an exact binomial test)", split(0.5)},
		{"install", "TrafficSplit app-svc: app-b 1, app-c 0 is in force at every client", apply(func() []scenarios.Policy { return splitPolicy(1, 0) })},
		{"trafficOnlyB", "app-b serves every request to app-svc", split(1)},
		{"install", "TrafficSplit app-svc: app-b 0, app-c 1 is in force", apply(func() []scenarios.Policy { return splitPolicy(0, 1) })},
		{"trafficOnlyC", "app-c serves every request to app-svc", split(0)},
		{"install", "TrafficSplit app-svc: app-b 75, app-c 25 is in force", apply(func() []scenarios.Policy { return splitPolicy(75, 25) })},
		{"trafficBGrtC", "app-b serves more than app-c, at a 75% share by an exact binomial test", split(0.75)},
		{"install", "TrafficSplit app-svc: app-b 25, app-c 75 is in force", apply(func() []scenarios.Policy { return splitPolicy(25, 75) })},
		{"trafficCGrtB", "app-c serves more than app-b, at a 75% share by an exact binomial test", split(0.25)},
	}},
}

// conformSpec deploys the application for one spec and runs its steps.
// A (mesh, mode) that cannot express the spec's kinds fails its first step
// and runs no other; unsupported then says why.
func (r *run) conformSpec(ctx context.Context, o ConformanceOptions, sl slot, spec smiSpec) (out *results.SpecOutcome, unsupported string, err error) {
	started := time.Now()
	out = &results.SpecOutcome{Spec: spec.name, Version: spec.version}
	c := &conformer{r: r, o: o, sl: sl}
	notRun := ""
	defer func() {
		if c.d != nil {
			c.d.stop(ctx, c.r.Log)
		}
	}()
	for i, st := range spec.steps {
		cs := results.CaseOutcome{Step: i + 1, Name: st.name, Assertion: st.assertion}
		t0 := time.Now()
		var msg string
		var err error
		switch {
		case notRun != "":
			err = errors.New("not run: " + notRun)
		case st.run == nil:
			msg, err = c.deploy(ctx, spec)
		default:
			msg, err = st.run(ctx, c)
		}
		cs.Seconds = time.Since(t0).Seconds()
		var fatal *fatalError
		switch {
		case errors.As(err, &fatal):
			return nil, "", fatal.err
		case err != nil:
			cs.Message = err.Error()
			if i == 0 {
				unsupported = err.Error()
			}
			if notRun == "" && (i == 0 || st.run == nil) {
				// Nothing after an unknown kind, or an application that
				// is not up, can pass.
				notRun = err.Error()
			}
		default:
			cs.Passed, cs.Message = true, msg
		}
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		out.Cases = append(out.Cases, cs)
	}
	out.Seconds = time.Since(started).Seconds()
	passed := 0
	for _, cs := range out.Cases {
		if cs.Passed {
			passed++
		}
	}
	switch {
	case passed == len(out.Cases):
		out.Capability = results.CapabilityFull
	case 2*passed >= len(out.Cases):
		out.Capability = results.CapabilityPartial
	default:
		out.Capability = results.CapabilityNone
	}
	return out, unsupported, nil
}

// fatalError is a failure of the harness, not of the mesh: the run stops.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

// deploy starts the spec's deployment (the appUp step).
func (c *conformer) deploy(ctx context.Context, spec smiSpec) (string, error) {
	r := c.r
	r.denyByDefault = spec.denyByDefault
	dir := filepath.Join(r.OutDir, "conformance", c.sl.mesh.Name()+"-"+string(c.sl.mode), spec.name)
	d, err := r.deploy(ctx, c.sl, dir)
	if err != nil {
		if ctx.Err() != nil {
			return "", &fatalError{ctx.Err()}
		}
		return "", fmt.Errorf("the application did not come up: %w", err)
	}
	c.d = d
	if d.dep.ApplyPolicies == nil || d.dep.Propagation == nil {
		return "", fmt.Errorf("%s has no control plane to put policy in force", c.sl.key())
	}
	if _, err := r.awaitClients(ctx, d.dep, 0, r.ReadyTimeout); err != nil {
		return "", fmt.Errorf("the mesh's clients are not configured: %w", err)
	}
	c.probe = r.prober(d, filepath.Join(dir, results.LogsDir))
	return fmt.Sprintf("%d workloads and their mesh ready", len(d.apps)+1), nil
}

// prober sends requests from app-a to a service, enrolled as the load
// client is: through its node's proxy, or its in-process library.
func (r *run) prober(d *deployment, logDir string) func(ctx context.Context, to, method, path string) (workload.ProbeResult, error) {
	n := 0
	return func(ctx context.Context, to, method, path string) (workload.ProbeResult, error) {
		n++
		t := d.dep.Target
		authority := meshes.Workload{Name: to, Port: ServerPort}.Authority()
		url, host := t.URL, authority
		if t.Host == "" {
			// The URL names the entry service (a library routes it).
			url, host = "http://"+authority+"/", ""
		}
		args := append([]string{"workload", "probe", "--url", url, "--path", path, "--method", method,
			"--count", fmt.Sprint(r.conformN), "--timeout", "5s"}, t.ClientArgs...)
		if host != "" {
			args = append(args, "--host", host)
		}
		var res workload.ProbeResult
		name := fmt.Sprintf("%s-probe-%02d", r.Scenario.Topology.Client.Name, n)
		out, err := r.runToEnd(ctx, logDir, r.Scenario.Topology.Client.Name, ProcessSpec{Name: name, Class: results.ClassLoadGen, Args: args, CPUs: cpusFor(results.ClassLoadGen)})
		if err != nil {
			return res, &fatalError{fmt.Errorf("probe from %s: %w", r.Scenario.Topology.Client.Name, err)}
		}
		if err := json.Unmarshal(out, &res); err != nil {
			return res, &fatalError{fmt.Errorf("probe from %s: %w", r.Scenario.Topology.Client.Name, err)}
		}
		return res, nil
	}
}

func kindKnown(kinds ...string) func(context.Context, *conformer) (string, error) {
	return func(_ context.Context, c *conformer) (string, error) {
		var objs []scenarios.Policy
		for _, k := range kinds {
			objs = append(objs, sampleObject(k))
		}
		if err := supportsPolicies(c.sl.mesh, c.sl.mode, objs); err != nil {
			return "", err
		}
		return strings.Join(kinds, ", ") + " compile for this mesh", nil
	}
}

// apply puts objs in force (all of the policy) and waits until every
// client of the control plane runs it.
func apply(policy func() []scenarios.Policy) func(context.Context, *conformer) (string, error) {
	return func(ctx context.Context, c *conformer) (string, error) {
		objs := policy()
		dep := c.d.dep
		if err := dep.ApplyPolicies(ctx, objs); err != nil {
			return "", err
		}
		p, err := c.r.awaitClients(ctx, dep, 0, c.r.ReadyTimeout)
		if err != nil {
			return "", fmt.Errorf("policy not in force everywhere: %w", err)
		}
		return fmt.Sprintf("%d objects in force at %d clients", len(objs), p.Connected), nil
	}
}

type pathCheck struct {
	method, path string
	allow        bool
}

func blocked(path string) func(context.Context, *conformer) (string, error) {
	return pathChecks(pathCheck{"GET", path, false})
}

func allowed(path string) func(context.Context, *conformer) (string, error) {
	return pathChecks(pathCheck{"GET", path, true})
}

// pathChecks sends each check's requests from app-a to app-b: allowed
// means every one answered 200 by app-b; denied, every one answered 403
// and none reached app-b.
func pathChecks(checks ...pathCheck) func(context.Context, *conformer) (string, error) {
	return func(ctx context.Context, c *conformer) (string, error) {
		var seen []string
		var fails []string
		for _, ch := range checks {
			res, err := c.probe(ctx, confB, ch.method, ch.path)
			if err != nil {
				return "", err
			}
			got := describe(res)
			seen = append(seen, fmt.Sprintf("%s %s: %s", ch.method, ch.path, got))
			switch {
			case ch.allow && (res.Codes[200] != res.Requests || res.ServedBy[confB] != res.Requests):
				fails = append(fails, fmt.Sprintf("%s %s should be allowed: %s", ch.method, ch.path, got))
			case !ch.allow && (res.Codes[403] != res.Requests || res.ServedBy[confB] != 0):
				fails = append(fails, fmt.Sprintf("%s %s should be denied (403): %s", ch.method, ch.path, got))
			}
		}
		if len(fails) > 0 {
			return "", errors.New(strings.Join(fails, "; "))
		}
		return strings.Join(seen, "; "), nil
	}
}

// split sends requests from app-a to app-svc and judges app-b's share
// against want: exactly all or none at 1 and 0; otherwise both serve, the
// larger share is the larger, and an exact two-sided binomial test does
// not reject want at the run's false-failure rate.
func split(want float64) func(context.Context, *conformer) (string, error) {
	return func(ctx context.Context, c *conformer) (string, error) {
		res, err := c.probe(ctx, confRoot, "GET", "/echo")
		if err != nil {
			return "", err
		}
		b, cc, n := res.ServedBy[confB], res.ServedBy[confC], res.Requests
		got := describe(res)
		if res.Codes[200] != n || b+cc != n {
			return "", fmt.Errorf("every request should be answered 200 by app-b or app-c: %s", got)
		}
		switch want {
		case 1, 0:
			if (want == 1 && b != n) || (want == 0 && cc != n) {
				return "", fmt.Errorf("app-b served %d and app-c %d of %d, want all to app-%s", b, cc, n, map[bool]string{true: "b", false: "c"}[want == 1])
			}
			return got, nil
		}
		p := reports.BinomialP(b, n, want)
		switch {
		case b == 0 || cc == 0:
			return "", fmt.Errorf("app-b served %d and app-c %d of %d: both should serve", b, cc, n)
		case want > 0.5 && b <= cc, want < 0.5 && cc <= b:
			return "", fmt.Errorf("app-b served %d and app-c %d of %d: the wrong one served more", b, cc, n)
		case p < c.o.Alpha:
			return "", fmt.Errorf("app-b served %d of %d: p = %.2g under a %.0f%% share, below %.0g", b, n, p, want*100, c.o.Alpha)
		}
		return fmt.Sprintf("%s (p = %.2g under app-b's %.0f%% share)", got, p, want*100), nil
	}
}

func describe(res workload.ProbeResult) string {
	s := fmt.Sprintf("%d requests, codes %v, served by %v", res.Requests, res.Codes, res.ServedBy)
	if res.Errors > 0 {
		s += fmt.Sprintf(", %d errors (%s)", res.Errors, res.FirstError)
	}
	return s
}

// runToEnd runs a process until it exits and returns its standard
// output (also kept in its log).
func (r *run) runToEnd(ctx context.Context, logDir, node string, spec ProcessSpec) ([]byte, error) {
	var stdout bytes.Buffer
	spec.Stdout = &stdout
	job, p, err := r.startJob(ctx, logDir, node, spec)
	if err != nil {
		return nil, err
	}
	defer func() { _ = job.Stop(ctx) }()
	select {
	case <-p.Done():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	_ = os.WriteFile(filepath.Join(logDir, spec.Name+".stdout.log"), stdout.Bytes(), 0o644)
	if err := p.Err(); err != nil {
		return nil, fmt.Errorf("%s: %v (see %s)", spec.Name, err, filepath.Join(logDir, spec.Name+".stderr.log"))
	}
	return stdout.Bytes(), nil
}
