package runner

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"time"

	"fortio.org/fortio/periodic"
	"fortio.org/fortio/stats"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/runner/chaos"
	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/runner/workload"
	"github.com/meshbench/meshbench/scenarios"
	"github.com/meshbench/meshbench/smps"
)

type started struct {
	comp meshes.Component
	proc Process
}

// slotRun is one trial of a (mesh, mode) at a rate, written to dir.
type slotRun struct {
	trial, pos int
	dir        string
	rate       float64
	// annotate, when set, completes the trial record before it is written
	// (a max search's verdict).
	annotate func(*results.Trial)
}

// env is the topology on the run's nodes, for a mesh to render.
func (r *run) env(dir string, nodes map[string]meshes.Node) meshes.Env {
	t := r.Scenario.Topology
	env := meshes.Env{Client: meshes.Workload{Name: t.Client.Name, Node: nodes[t.Client.Name]}, Dir: dir,
		ControlPlane: nodes[scenarios.ControlPlaneNode]}
	env.Alternatives = r.Scenario.Alternatives()
	slots := map[string]int{} // a shared node's pods so far
	for _, svc := range t.ServiceList() {
		pod := func(name string) meshes.Workload {
			w := meshes.Workload{Name: name, Node: nodes[name], Port: ServerPort,
				PayloadSize: int(svc.PayloadSize), ServiceTime: svc.ServiceTime.D()}
			if name != svc.Name {
				w.App = svc.Name
			}
			if svc.Node != "" {
				w.Host, w.Slot = nodes[svc.Node], slots[svc.Node]
				slots[svc.Node]++
			}
			return w
		}
		names := svc.PodNames()
		ms := meshes.Service{Workload: pod(names[0]), ClusterIP: r.clusterIPs[svc.Name], Calls: svc.Calls, Selects: svc.Selects}
		for _, n := range names[1:] {
			ms.Replicas = append(ms.Replicas, pod(n))
		}
		env.Services = append(env.Services, ms)
	}
	env.Transparent = r.manifest.Platform.Transparent
	env.DenyByDefault, env.Mutate = r.denyByDefault, r.mutate
	env.Protocol = r.Scenario.Load.Protocol
	return env
}

// deployment is a (mesh, mode) deployed and running: what the mesh
// rendered and the units placed for it: the control plane's, then the
// workloads' (services, their redirects and the mesh's proxies).
type deployment struct {
	dep        *meshes.Deployment
	env        meshes.Env
	units      []Deployed // in placement order
	procs      []started  // every process, in start order
	apps       []started
	logDir     string
	withPolicy bool
	// release removes the pods a platform made for this deployment
	// (Preparer), once its units have stopped.
	release func(context.Context) error
}

// stop stops the units in the reverse order of their placement: the
// mesh's components, then the services (the client has stopped: no
// request is in flight) and their redirects, then the control plane. Each
// process gets its own grace period, so that one slow process does not
// cost the others theirs (and their final counts). Stopping twice is
// harmless.
func (d *deployment) stop(ctx context.Context, log Logger) {
	for i := len(d.units) - 1; i >= 0; i-- {
		if err := d.units[i].Stop(ctx); err != nil {
			log.Logf("%v", err)
		}
	}
	if d.release != nil {
		// Also when the run is interrupted: the nodes' own pods must
		// have their places back, for the next start or trial.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), undoTimeout)
		defer cancel()
		if err := d.release(rctx); err != nil {
			log.Logf("remove the deployment's pods: %v", err)
		}
		d.release = nil
	}
}

// deploy renders one (mesh, mode) into dir and places it: the control
// plane first (with the policy in force before any load), then one pod
// per node with its services, the redirects and the mesh's components.
// On error what was placed is removed.
func (r *run) deploy(ctx context.Context, sl slot, dir string) (_ *deployment, err error) {
	logDir := filepath.Join(dir, results.LogsDir)
	confDir := filepath.Join(dir, "config")
	if err := errors.Join(os.MkdirAll(confDir, 0o755), os.MkdirAll(logDir, 0o755)); err != nil {
		return nil, err
	}
	d := &deployment{env: r.env(confDir, r.nodes), logDir: logDir}
	d.dep, err = sl.mesh.Deploy(d.env, sl.mode)
	if err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	// On error, what was placed so far goes (d is not the result, which
	// the error returns set to nil).
	defer func() {
		if err != nil {
			d.stop(ctx, r.Log)
		}
	}()
	if len(d.dep.Redirects) > 0 && !d.env.Transparent {
		return nil, fmt.Errorf("deploy: %s/%s asked for transparent interception, which this platform cannot do", sl.mesh.Name(), sl.mode)
	}
	if pr, ok := r.Platform.(Preparer); ok && len(d.dep.Redirects) > 0 {
		if err := r.prepare(ctx, pr, d, sl, confDir); err != nil {
			return nil, err
		}
	}
	dep := d.dep
	// A control plane first: everything else may take its configuration
	// from it.
	if c := dep.ControlPlane; c != nil {
		if err := r.place(ctx, d, c.Name, []podOf{{node: c.Node, comps: []meshes.Component{*c}}}); err != nil {
			return nil, err
		}
	}
	// The policy in force before the load, so that the proxies' first
	// configuration has it. (Plan has left out the pairs that cannot
	// express it; the harness floor's calibration runs without.)
	d.withPolicy = len(r.Scenario.Policies) > 0 && supportsPolicies(sl.mesh, sl.mode, r.Scenario.Policies) == nil
	if d.withPolicy {
		if dep.ApplyPolicies == nil {
			return nil, fmt.Errorf("deploy: %s/%s has policies to apply and no way to apply them", sl.mesh.Name(), sl.mode)
		}
		if err := dep.ApplyPolicies(ctx, r.Scenario.PoliciesAt(0)); err != nil {
			return nil, fmt.Errorf("apply policies: %w", err)
		}
	}
	if err := r.place(ctx, d, sl.mesh.Name()+"/"+string(sl.mode), r.podsOf(d.env, dep), serviceChecks(d.env)...); err != nil {
		return nil, err
	}
	for _, st := range d.procs {
		if st.comp.Class == results.ClassApp {
			d.apps = append(d.apps, st)
		}
	}
	return d, nil
}

// podOf is a pod in the making: the components to run on a node.
type podOf struct {
	node      string
	comps     []meshes.Component
	redirects []meshes.Redirect
}

// podsOf are the workloads' pods of a rendered deployment, one per node:
// the services (which answer their plaintext probes before the redirects
// would send them to a proxy), the redirects, the mesh's components.
func (r *run) podsOf(env meshes.Env, dep *meshes.Deployment) []podOf {
	var pods []podOf
	podAt := func(node string) *podOf {
		for i := range pods {
			if pods[i].node == node {
				return &pods[i]
			}
		}
		pods = append(pods, podOf{node: node})
		return &pods[len(pods)-1]
	}
	for _, c := range r.appComponents(env, dep) {
		pa := podAt(c.Node)
		pa.comps = append(pa.comps, c)
	}
	// The mesh's redirects, then the replicated services' load balancing
	// (the platform's, as kube-proxy's), which sees only the connections
	// the mesh did not intercept.
	for _, rd := range slices.Concat(dep.Redirects, serviceBalancing(env)) {
		pa := podAt(rd.Node)
		pa.redirects = append(pa.redirects, rd)
	}
	for _, c := range dep.Components {
		pa := podAt(c.Node)
		pa.comps = append(pa.comps, c)
	}
	return pods
}

// shapes are the pods' shapes, for a Preparer.
func shapes(pods []podOf) []PodShape {
	out := make([]PodShape, len(pods))
	for i, pa := range pods {
		out[i] = PodShape{Node: pa.node, Redirects: len(pa.redirects) > 0}
		for _, c := range pa.comps {
			out[i].Processes = append(out[i].Processes, ProcessShape{Name: c.Name, Class: c.Class})
		}
	}
	return out
}

// prepare has the platform make the workloads' pods from their shapes,
// then renders the deployment again on their addresses: a Kubernetes
// pod's containers, the sidecar and the init container that installs the
// redirect among them, are fixed when it is made, and its address comes
// with it. The second render must have the first's shape.
func (r *run) prepare(ctx context.Context, pr Preparer, d *deployment, sl slot, confDir string) error {
	want := shapes(r.podsOf(d.env, d.dep))
	nodes, release, err := pr.Prepare(ctx, want)
	if err != nil {
		return fmt.Errorf("deploy: make the pods: %w", err)
	}
	d.release = release
	if len(nodes) == 0 {
		return nil
	}
	all := maps.Clone(r.nodes)
	maps.Copy(all, nodes)
	env := r.env(confDir, all)
	dep, err := sl.mesh.Deploy(env, sl.mode)
	if err != nil {
		return fmt.Errorf("deploy on the pods' addresses: %w", err)
	}
	if got := shapes(r.podsOf(env, dep)); !reflect.DeepEqual(got, want) {
		return fmt.Errorf("deploy: %s/%s rendered other pods on the pods' addresses (%v) than before them (%v)", sl.mesh.Name(), sl.mode, got, want)
	}
	d.env, d.dep = env, dep
	return nil
}

// place deploys pods as one unit with their logs in d's log directory and
// records its processes with their components; services are probed once
// the unit's applications answer.
func (r *run) place(ctx context.Context, d *deployment, name string, pods []podOf, services ...ServiceCheck) error {
	u := Unit{Name: name, Services: services}
	byName := map[string]meshes.Component{}
	for _, pa := range pods {
		pod := Pod{Node: pa.node, Redirects: pa.redirects}
		for _, c := range pa.comps {
			spec, err := r.logged(d.logDir, ProcessSpec{Name: c.Name, Class: c.Class, Command: c.Command, Args: c.Args,
				Ready: c.Ready, CPUs: cpusFor(c.Class), HTTPFaults: c.HTTPFaults})
			if err != nil {
				return err
			}
			pod.Processes = append(pod.Processes, spec)
			byName[c.Name] = c
		}
		u.Pods = append(u.Pods, pod)
	}
	dd, err := r.deployUnit(ctx, u)
	if err != nil {
		return err
	}
	d.units = append(d.units, dd)
	for _, p := range dd.Processes() {
		d.procs = append(d.procs, started{comp: byName[p.Name()], proc: p})
	}
	return nil
}

// runSlot deploys one (mesh, mode), drives the load through it while
// sampling resources, tears everything down and writes the trial's files.
func (r *run) runSlot(ctx context.Context, sl slot, sr slotRun) (*results.Trial, error) {
	s := r.Scenario
	dir := sr.dir
	d, err := r.deploy(ctx, sl, dir)
	if err != nil {
		return nil, err
	}
	defer d.stop(ctx, r.Log)
	dep, logDir := d.dep, d.logDir
	tr := &results.Trial{
		Mesh: sl.mesh.Name(), Mode: string(sl.mode), Trial: sr.trial, Position: sr.pos,
		Protocol: s.Load.Protocol, Target: dep.Target.URL, Connections: s.Load.Connections,
		Duration: s.Load.Duration.String(), Requested: sr.rate,
	}
	if v, ok := sl.mesh.(meshes.Versioned); ok {
		tr.DataPlane = v.Version()
	}
	tr.MTLS = dep.MTLS
	if rel, err := filepath.Rel(r.OutDir, dir); err == nil {
		tr.Path = rel
	}
	fortioPath := filepath.Join(dir, results.FortioFile)
	acts := []activity{func(_ context.Context, start time.Time) error { tr.MeasureStart = start; return nil }}
	ev := &windowEvents{}
	if d.withPolicy && len(r.Scenario.PolicyChanges()) > 0 {
		acts = append(acts, r.policyTimeline(dep, ev))
	}
	// Faults in trials, not in the harness floor's calibration.
	unprepare := func() {}
	if len(r.faults) > 0 && sr.trial > 0 {
		if unprepare, err = r.prepareFaults(ctx, d, sl.mode, ev); err != nil {
			return nil, err
		}
		defer unprepare()
		acts = append(acts, r.faultTimeline(d, sl.mode, tr, ev))
	}
	// The game day's active probes, in trials too.
	readings := &probeReadings{}
	var notApplicable map[string]string
	if len(s.Probes) > 0 && sr.trial > 0 {
		var probes []activity
		probes, notApplicable = r.activeProbes(d, sl, readings)
		acts = append(acts, probes...)
	}
	if r.Profile && sr.trial > 0 && len(dep.Profiles) > 0 {
		acts = append(acts, r.profiles(dep, dir, tr))
	}
	res, usage, err := r.drive(ctx, dep, d.procs, logDir, fortioPath, sr.rate, acts)
	if err != nil {
		return nil, err
	}
	tr.Events = ev.list()
	if c := dep.ControlPlane; c != nil && c.Status != "" {
		tr.ControlPlane, err = controlPlaneReport(ctx, c, logDir)
		if err != nil {
			return nil, err
		}
	}
	// What the mesh's telemetry saw, while its proxies still run.
	meshCounts := map[string]*results.TrafficMetrics{}
	if dep.TrafficMetrics != nil {
		// Per service (a replicated one's on its first pod's record).
		for _, svc := range d.env.Services {
			meshCounts[svc.Name] = r.trafficMetrics(ctx, dep, svc.Name)
		}
	}
	// Stopped before the counts are read: each service reports them at
	// exit.
	unprepare()
	d.stop(ctx, r.Log)
	var lat, co stats.HistogramData
	if err := readJSON(results.LatencyPath(fortioPath), &lat); err != nil {
		return nil, err
	}
	if err := readJSON(results.COPath(fortioPath), &co); err != nil {
		return nil, err
	}
	if err := readJSON(results.SeriesPath(fortioPath), &tr.Series); err != nil {
		return nil, err
	}
	if err := fillTrial(tr, res, &lat, &co, usage); err != nil {
		return nil, err
	}
	for _, a := range d.apps {
		sc := servedCount(a.comp.Name, filepath.Join(logDir, a.comp.Name+".stdout.log"))
		sc.Mesh = meshCounts[a.comp.Name]
		tr.Services = append(tr.Services, sc)
	}
	if len(s.Probes) > 0 && sr.trial > 0 {
		tr.ProbeReadings = readings.sorted()
		tr.Verdict = chaos.Judge(s.Probes, chaos.Observed{Series: tr.Series,
			Rate: sr.rate, Window: s.Load.Duration.D().Seconds(), Readings: tr.ProbeReadings, NotApplicable: notApplicable}, tr.Faults)
	}
	if sr.annotate != nil {
		sr.annotate(tr)
	}
	if err := r.writeTrial(dir, tr); err != nil {
		return nil, err
	}
	return tr, nil
}

// trafficMetrics reads what the mesh reports of a service's traffic; a
// failure is recorded with the figures, not fatal to the trial.
func (r *run) trafficMetrics(ctx context.Context, dep *meshes.Deployment, svc string) *results.TrafficMetrics {
	m, err := dep.TrafficMetrics(ctx, svc)
	if err != nil {
		r.Log.Logf("traffic metrics of %s: %v", svc, err)
		return &results.TrafficMetrics{Error: err.Error()}
	}
	return &results.TrafficMetrics{Success: m.Success, Failure: m.Failure, P50Ms: m.P50Ms, P90Ms: m.P90Ms, P99Ms: m.P99Ms,
		Window: m.Window.String(), From: m.From}
}

// drive runs the load client on the client's node and samples every
// process of the trial while the client measures.
func (r *run) drive(ctx context.Context, dep *meshes.Deployment, procs []started, logDir, fortioPath string, rate float64, acts []activity) (*loadResult, []results.Usage, error) {
	s := r.Scenario
	client := s.Topology.Client.Name
	args := []string{"workload", "client",
		"--url", dep.Target.URL,
		"--qps", strconv.FormatFloat(rate, 'f', -1, 64),
		"--connections", strconv.Itoa(s.Load.Connections),
		"--duration", s.Load.Duration.String(),
		"--warmup", s.Load.Warmup.String(),
		"--request-size", strconv.FormatInt(int64(s.Load.RequestSize), 10),
		"--protocol", s.Load.Protocol,
		"--out", fortioPath,
	}
	if dep.Target.Host != "" {
		args = append(args, "--host", dep.Target.Host)
	}
	args = append(args, dep.Target.ClientArgs...)
	pr, pw := io.Pipe()
	defer pr.Close()
	stdout, err := os.Create(filepath.Join(logDir, client+".stdout.log"))
	if err != nil {
		return nil, nil, err
	}
	defer stdout.Close()
	// readEvents never blocks on this channel (it drops what does not fit),
	// so its size only has to exceed the few events a client emits.
	events := make(chan workload.Event, 16)
	go readEvents(pr, stdout, events)

	job, p, err := r.startJob(ctx, logDir, client, ProcessSpec{
		Name: client, Class: results.ClassLoadGen, Args: args, Stdout: pw, CPUs: cpusFor(results.ClassLoadGen),
	})
	if err != nil {
		pw.Close()
		return nil, nil, err
	}
	defer func() {
		_ = job.Stop(ctx)
		pw.Close()
	}()

	watch := []Process{p}
	for _, c := range procs {
		watch = append(watch, c.proc)
	}
	var endUsage func() []results.Usage
	var usage []results.Usage
	var start workload.Event
	stopActivities := func() error { return nil }
	defer func() { _ = stopActivities() }()
	handle := func(ev workload.Event) {
		switch {
		case ev.Event == workload.EventMeasureStart && endUsage == nil:
			endUsage = r.meterUsage(watch)
			start = ev
			if len(acts) > 0 {
				stopActivities = runActivities(ctx, acts, ev.Time)
			}
		case ev.Event == workload.EventMeasureEnd && endUsage != nil:
			usage = endUsage()
			endUsage = nil
			// The client measured its own CPU over exactly its window
			// (it may exit before the platform can read it again).
			if d := ev.Time.Sub(start.Time).Seconds(); d > 0 && ev.CPUSeconds > 0 {
				usage[0].CPUMillicores = (ev.CPUSeconds - start.CPUSeconds) / d * 1000
				usage[0].Source = "getrusage"
			}
		}
	}
wait:
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				events = nil // stdout closed; wait for the exit
				continue
			}
			handle(ev)
		case <-p.Done():
			// Nothing more can be written: close the pipe and take the
			// events still on their way before ending the window.
			pw.Close()
			for ev := range events {
				handle(ev)
			}
			break wait
		case <-ctx.Done():
			if endUsage != nil {
				endUsage()
			}
			return nil, nil, ctx.Err()
		}
	}
	if endUsage != nil {
		usage = endUsage()
	}
	actErr := stopActivities()
	stopActivities = func() error { return nil }
	if err := p.Err(); err != nil {
		return nil, nil, fmt.Errorf("load client failed: %v (see %s)", err, filepath.Join(logDir, client+".stderr.log"))
	}
	if actErr != nil {
		return nil, nil, actErr
	}
	res, err := readFortio(fortioPath)
	if err != nil {
		return nil, nil, err
	}
	return res, usage, nil
}

// readEvents copies the client's stdout to its log and forwards the events
// it announces.
func readEvents(r io.Reader, log io.Writer, events chan<- workload.Event) {
	defer close(events)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Bytes()
		_, _ = log.Write(append(line, '\n'))
		var ev workload.Event
		if json.Unmarshal(line, &ev) == nil && ev.Event != "" {
			select {
			case events <- ev:
			default: // nobody listens any more: the trial is over
			}
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read load result: %w", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// loadResult is what the runner reads of the load client's fortio
// result, whichever runner (HTTP, gRPC, TCP) wrote it.
type loadResult struct {
	periodic.RunnerResults
	// RetCodes counts HTTP status codes (http, http2), or gRPC status
	// names and TCP outcomes ("OK" for success).
	RetCodes json.RawMessage
}

func readFortio(path string) (*loadResult, error) {
	var res loadResult
	if err := readJSON(path, &res); err != nil {
		return nil, err
	}
	if res.DurationHistogram == nil {
		return nil, fmt.Errorf("%s: no latency histogram", path)
	}
	return &res, nil
}

// fillTrial copies the measured figures into the trial record: counts
// from fortio's result, latencies from meshbench's own finer histograms of
// the same requests.
func fillTrial(tr *results.Trial, res *loadResult, lat, co *stats.HistogramData, usage []results.Usage) error {
	h := res.DurationHistogram
	tr.Start = res.StartTime.UTC()
	tr.End = res.StartTime.Add(res.ActualDuration).UTC()
	tr.Achieved = res.ActualQPS
	tr.Requests = h.Count
	switch tr.Protocol {
	case scenarios.ProtocolGRPC, scenarios.ProtocolTCP:
		var raw map[string]int64
		if err := json.Unmarshal(res.RetCodes, &raw); err != nil {
			return fmt.Errorf("load result: RetCodes: %w", err)
		}
		tr.Statuses = map[string]int64{}
		for status, n := range raw {
			if status != results.StatusOK {
				tr.Errors += n
			}
			// fortio's TCP errors name the connection's addresses: one
			// key per error kind, not per connection.
			tr.Statuses[results.StatusKey(status)] += n
		}
	default:
		tr.Codes = map[int]int64{}
		if err := json.Unmarshal(res.RetCodes, &tr.Codes); err != nil {
			return fmt.Errorf("load result: RetCodes: %w", err)
		}
		for code, n := range tr.Codes {
			if code < 200 || code > 299 {
				tr.Errors += n
			}
		}
	}
	tr.LatencyMs = latencyMs(lat)
	tr.COLatencyMs = latencyMs(co)
	tr.Components = usage
	return nil
}

// latencyMs converts a fortio histogram (seconds) into milliseconds.
func latencyMs(h *stats.HistogramData) results.Latency {
	ms := func(sec float64) float64 { return sec * 1000 }
	l := results.Latency{Min: ms(h.Min), Mean: ms(h.Avg), Max: ms(h.Max)}
	for _, p := range h.Percentiles {
		switch p.Percentile {
		case 50:
			l.P50 = ms(p.Value)
		case 90:
			l.P90 = ms(p.Value)
		case 99:
			l.P99 = ms(p.Value)
		case 99.9:
			l.P999 = ms(p.Value)
		}
	}
	return l
}

// writeTrial writes the SMPS documents and then trial.json, the marker that
// the trial finished; each file atomically.
func (r *run) writeTrial(dir string, tr *results.Trial) error {
	cfg, res := smps.FromTrial(r.manifest, tr)
	msgs := map[string]smps.Message{results.SMPConfigFile: cfg, results.SMPResultFile: res, results.SMPMeshFile: smps.MeshConfig(r.manifest, tr)}
	for name, msg := range msgs {
		data, err := smps.Marshal(msg)
		if err != nil {
			return err
		}
		if err := results.WriteFile(filepath.Join(dir, name), data); err != nil {
			return err
		}
	}
	tr.End = tr.End.Round(time.Microsecond)
	return results.WriteJSON(filepath.Join(dir, results.TrialFile), tr)
}
