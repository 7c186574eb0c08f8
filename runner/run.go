package runner

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/runner/chaos"
	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/runner/workload"
	"github.com/meshbench/meshbench/scenarios"
	"github.com/meshbench/meshbench/smps"
)

// ServerPort is the port the server workload listens on.
const ServerPort = 8080

// Defaults for readiness and teardown.
const (
	DefaultReadyTimeout = 15 * time.Second
	DefaultStopTimeout  = 5 * time.Second
)

// Options configure a run.
type Options struct {
	Scenario *scenarios.Scenario
	// Meshes is the registry of meshes the scenario may name.
	Meshes map[string]meshes.Mesh
	// Platform runs the nodes; the caller chooses and constructs it.
	Platform Platform
	// OutDir is the results directory to create and fill.
	OutDir string
	// RunID tags everything the run creates.
	RunID string
	Build results.Build
	Log   Logger
	// ReadyTimeout bounds waiting for a component to become ready.
	ReadyTimeout time.Duration
	// Profile takes the Go proxies' profiles over each trial's window.
	Profile bool
}

// slot is one (mesh, mode) of the plan.
type slot struct {
	mesh meshes.Mesh
	mode scenarios.Mode
}

func (s slot) key() string { return s.mesh.Name() + "/" + string(s.mode) }

// Plan resolves the scenario's meshes against the registry. Its errors point
// at the scenario's lines and nothing has been started when it fails. A
// (mesh, mode) that cannot express the scenario's policies is an error, or,
// with onUnsupportedPolicy: skip, left out and returned with the reason.
func Plan(s *scenarios.Scenario, registry map[string]meshes.Mesh) ([]slot, []results.Unavailable, error) {
	var errs scenarios.ErrorList
	var out []slot
	var skipped []results.Unavailable
	for i, ref := range s.Meshes {
		m, ok := registry[ref.Name]
		if !ok {
			errs = append(errs, s.FieldError(fmt.Sprintf("meshes[%d].name", i), "unknown mesh %q (known: %s)", ref.Name, names(registry)))
			continue
		}
		if err := meshes.Supports(m, ref.Mode); err != nil {
			errs = append(errs, s.FieldError(fmt.Sprintf("meshes[%d].mode", i), "%v", err))
			continue
		}
		if _, other := registry[ref.As]; other && ref.As != ref.Name {
			errs = append(errs, s.FieldError(fmt.Sprintf("meshes[%d].as", i), "%q is another mesh's name: a variant's rows would mix with its rows", ref.As))
			continue
		}
		if ref.As != "" || ref.Proxy != nil {
			var err error
			if m, err = variant(m, ref); err != nil {
				errs = append(errs, s.FieldError(fmt.Sprintf("meshes[%d]", i), "%s: %v", ref, err))
				continue
			}
			if p := ref.Proxy; p != nil && p.Binary != "" {
				if s.Platform != "" && s.Platform != "local" {
					errs = append(errs, s.FieldError(fmt.Sprintf("meshes[%d].proxy.binary", i), "a build on this host runs on the local platform only (the %s platform runs the builds in its pods' image)", s.Platform))
					continue
				}
				if _, err := exec.LookPath(p.Binary); err != nil {
					errs = append(errs, s.FieldError(fmt.Sprintf("meshes[%d].proxy.binary", i), "cannot be run on this host: %v", err))
					continue
				}
			}
		}
		if s.Topology.Replicated() {
			if err := meshes.SupportsReplicas(m, ref.Mode); err != nil {
				errs = append(errs, s.FieldError(fmt.Sprintf("meshes[%d]", i), "%s: %v (the topology has replicated services)", ref, err))
				continue
			}
		}
		if s.ControlPlane == nil {
			if err := meshes.Carries(m, s.Load.Protocol, ref.Mode); err != nil {
				// Reported with the reason, as the comparison's other
				// rows run.
				skipped = append(skipped, results.Unavailable{Mesh: ref.Row(), Mode: string(ref.Mode), Reason: "load.protocol " + s.Load.Protocol + ": " + err.Error()})
				continue
			}
		}
		if err := supportsPolicies(m, ref.Mode, s.Policies); err != nil {
			if s.OnUnsupportedPolicy == scenarios.PolicySkip {
				skipped = append(skipped, results.Unavailable{Mesh: ref.Row(), Mode: string(ref.Mode), Reason: "policies: " + err.Error()})
				continue
			}
			errs = append(errs, s.FieldError(fmt.Sprintf("meshes[%d]", i), "%s cannot express the scenario's policies: %v (onUnsupportedPolicy: skip leaves it out)", ref, err))
			continue
		}
		if s.ControlPlane != nil {
			if err := benchesControlPlane(m, ref.Mode); err != nil {
				errs = append(errs, s.FieldError(fmt.Sprintf("meshes[%d]", i), "%s: %v", ref, err))
				continue
			}
		}
		out = append(out, slot{mesh: m, mode: ref.Mode})
	}
	// What runs on this host: a command probe's program (the scenario's
	// validation says nothing of a host).
	for i, p := range s.Probes {
		if p.Type == scenarios.ProbeCommand && len(p.Command) > 0 && p.Command[0] != "" {
			if _, err := exec.LookPath(p.Command[0]); err != nil {
				errs = append(errs, s.FieldError(fmt.Sprintf("probes[%d].command", i), "%q cannot be run on this host: %v", p.Command[0], err))
			}
		}
	}
	if len(errs) > 0 {
		return nil, nil, errs
	}
	return out, skipped, nil
}

// variant is the mesh a scenario's entry names with as or proxy: a
// Tunable mesh under its row name, tuned.
func variant(m meshes.Mesh, ref scenarios.MeshRef) (meshes.Mesh, error) {
	t, ok := m.(meshes.Tunable)
	if !ok {
		return nil, fmt.Errorf("mesh %s takes neither as nor proxy (its proxies are not Go processes meshbench tunes)", m.Name())
	}
	return t.Tuned(ref.Row(), ref.Mode, ref.Proxy)
}

// PlanRun is Plan for a run: a scenario none of whose (mesh, mode) pairs
// can run it is an error too.
func PlanRun(s *scenarios.Scenario, registry map[string]meshes.Mesh) ([]slot, []results.Unavailable, error) {
	slots, skipped, err := Plan(s, registry)
	if err != nil || len(slots) > 0 {
		return slots, skipped, err
	}
	var errs scenarios.ErrorList
	for _, u := range skipped {
		errs = append(errs, s.FieldError("meshes", "%s/%s cannot run: %s", u.Mesh, u.Mode, u.Reason))
	}
	return nil, nil, append(errs, s.FieldError("meshes", "no (mesh, mode) of the scenario can run it"))
}

// supportsPolicies says why m cannot express policies in mode, if it
// cannot.
func supportsPolicies(m meshes.Mesh, mode scenarios.Mode, policies []scenarios.Policy) error {
	if len(policies) == 0 {
		return nil
	}
	pc, ok := m.(meshes.PolicyCapable)
	if !ok {
		return fmt.Errorf("mesh %s has no traffic policy", m.Name())
	}
	return pc.SupportsPolicies(policies, mode)
}

// controlPlanes says a row's mesh has a control plane (the meshes with
// one implement ControlPlaneMesh), which then runs on a node of its own
// (scenarios.ControlPlaneNode): on Kubernetes, the pod of a Deployment,
// as a mesh's control plane is there.
func (r *run) controlPlanes() bool {
	for _, sl := range r.slots {
		if _, ok := sl.mesh.(meshes.ControlPlaneMesh); ok {
			return true
		}
	}
	return false
}

// benchesControlPlane says why m cannot run the control-plane benchmark in
// mode, if it cannot.
func benchesControlPlane(m meshes.Mesh, mode scenarios.Mode) error {
	cp, ok := m.(meshes.ControlPlaneMesh)
	if !ok {
		return fmt.Errorf("mesh %s has no control plane to benchmark", m.Name())
	}
	return cp.BenchControlPlane(mode)
}

// order is the slot order of trial t (1-based). "rotate" runs trials in
// pairs: the odd trial of a pair runs the slots shifted by one more than
// the pair before, the even trial runs the same order backwards. Over 2n
// trials each (mesh, mode) takes every position, so machine drift spreads
// across all of them; and within every pair of trials any two run in both
// orders, so an effect of running right after another (a warm cache, the
// other's sockets in TIME_WAIT) cancels in trial-by-trial comparisons
// (compare --paired) instead of favouring one side; with an odd trial
// count the last trial is the one unbalanced. The last slot of an odd
// trial runs again first in the even one after it. "random" shuffles the
// slots per trial from the run's seed, reproducibly.
func order(slots []slot, t int, how string, seed uint64) []slot {
	n := len(slots)
	out := make([]slot, n)
	if how == scenarios.OrderRandom {
		copy(out, slots)
		rng := rand.New(rand.NewPCG(seed, uint64(t)))
		rng.Shuffle(n, func(i, j int) { out[i], out[j] = out[j], out[i] })
		return out
	}
	shift := (t - 1) / 2
	for i := range slots {
		out[i] = slots[(i+shift)%n]
	}
	if t%2 == 0 {
		slices.Reverse(out)
	}
	return out
}

// Run executes the scenario and returns the manifest and every trial. Each
// trial's files are on disk before the next one starts; on error or when ctx
// is cancelled, the trials finished so far are returned with the error.
func Run(ctx context.Context, o Options) (*results.Manifest, []*results.Trial, error) {
	if o.Log == nil {
		o.Log = nopLogger{}
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	s := o.Scenario
	slots, skipped, err := PlanRun(s, o.Meshes)
	if err != nil {
		return nil, nil, err
	}
	for _, sk := range skipped {
		o.Log.Logf("%s/%s left out: %s", sk.Mesh, sk.Mode, sk.Reason)
	}
	// Processes get file paths under the results directory, and some
	// (nginx) resolve relative paths against their own prefix, not ours.
	if o.OutDir, err = filepath.Abs(o.OutDir); err != nil {
		return nil, nil, err
	}
	r := &run{Options: o, slots: slots, skipped: skipped}
	defer r.down(ctx)
	// Faults the platform cannot execute are refused before anything
	// (even the results directory) exists.
	if err := r.planFaults(); err != nil {
		return nil, nil, err
	}
	if d := o.Platform.Describe(); o.Scenario.Topology.Replicated() && !d.Transparent {
		return nil, nil, o.Scenario.FieldError("topology", "replicated services need a platform that redirects traffic (the local platform's netns network, or pods), whose iptables spread a service's connections over its pods as kube-proxy does (this platform: %s, network %s)", d.Name, d.Network)
	}
	if err := os.MkdirAll(filepath.Join(o.OutDir, results.LogsDir), 0o755); err != nil {
		return nil, nil, fmt.Errorf("create results directory: %w", err)
	}
	err = r.execute(ctx)
	return r.manifest, r.trials, err
}

// down takes the platform down (after ctx ended too) and closes the
// process logs.
func (r *run) down(ctx context.Context) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := r.Platform.Down(dctx); err != nil {
		r.Log.Logf("teardown: %v", err)
	}
	for _, f := range r.logs {
		f.Close()
	}
}

type run struct {
	Options
	slots   []slot
	skipped []results.Unavailable // left out for their policies
	nodes   map[string]meshes.Node
	// clusterIPs are the services' own addresses, where the platform
	// gives them one (ServiceNetwork).
	clusterIPs map[string]netip.Addr
	manifest   *results.Manifest
	trials     []*results.Trial
	logs       []*os.File
	// denyByDefault and mutate are the conformance suite's: access
	// control on everywhere, and (test-only) a translation broken on
	// purpose.
	denyByDefault bool
	mutate        string
	conformN      int // requests per conformance check
	// faults are the planned fault actions, the same in every trial.
	faults []chaos.Action
}

func (r *run) execute(ctx context.Context) error {
	s := r.Scenario
	// What cannot run here is known before a platform is brought up for
	// it (a kind cluster takes a minute).
	unavailable := append(r.skipped, r.dropUnavailable()...)
	if len(r.slots) == 0 {
		return fmt.Errorf("no (mesh, mode) of the scenario can run on this host (the reasons are above)")
	}
	var err error
	// A node per pod, the nodes services share (where their per-node
	// proxies run), and one for a control plane.
	names := append(s.Topology.Workloads(), s.Topology.SharedNodes()...)
	if r.controlPlanes() {
		names = append(names, scenarios.ControlPlaneNode)
	}
	r.nodes, err = r.Platform.Up(ctx, names)
	if err != nil {
		return fmt.Errorf("platform up: %w", err)
	}
	if err := r.expose(ctx); err != nil {
		return err
	}
	if s.Order == scenarios.OrderRandom && s.Seed == 0 {
		s.Seed = rand.Uint64() // recorded in the manifest's scenario
	}
	if err := r.writeManifest(); err != nil {
		return err
	}
	r.manifest.Unavailable = unavailable
	if len(unavailable) > 0 {
		if err := results.WriteJSON(filepath.Join(r.OutDir, results.ManifestFile), r.manifest); err != nil {
			return err
		}
	}
	if s.ControlPlane != nil {
		return r.benchControlPlanes(ctx)
	}
	if s.Load.Max != nil {
		if err := r.calibrate(ctx, s.Load.Max.Start); err != nil {
			return err
		}
		return r.searchAll(ctx)
	}
	rates := s.RateList()
	for _, rate := range rates {
		if err := r.calibrate(ctx, rate); err != nil {
			return err
		}
		for t := 1; t <= s.Trials; t++ {
			for pos, sl := range order(r.slots, t, s.Order, s.Seed) {
				rel := results.TrialDir(sl.mesh.Name(), string(sl.mode), t)
				label := fmt.Sprintf("trial %d/%d: %s", t, s.Trials, sl.key())
				if len(rates) > 1 {
					rel = results.SweepTrialDir(sl.mesh.Name(), string(sl.mode), rate, t)
					label += fmt.Sprintf(" at %g rps", rate)
				}
				r.Log.Logf("%s", label)
				tr, err := r.runSlot(ctx, sl, slotRun{trial: t, pos: pos, dir: filepath.Join(r.OutDir, rel), rate: rate})
				if err != nil {
					return fmt.Errorf("%s: %w", label, err)
				}
				r.trials = append(r.trials, tr)
			}
		}
	}
	return nil
}

// expose gives the topology's services addresses of their own where the
// platform can (ServiceNetwork): Kubernetes Services over their pods.
func (r *run) expose(ctx context.Context) error {
	sn, ok := r.Platform.(ServiceNetwork)
	if !ok {
		return nil
	}
	var specs []ServiceSpec
	for _, svc := range r.Scenario.Topology.ServiceList() {
		specs = append(specs, ServiceSpec{Name: svc.Name, Port: ServerPort, Pods: svc.PodNames()})
	}
	var err error
	if r.clusterIPs, err = sn.Expose(ctx, specs); err != nil {
		return fmt.Errorf("platform services: %w", err)
	}
	return nil
}

// calibrate measures the harness floor before any trial: fortio straight
// to the echo server, no mesh, under the scenario's load. Every report
// states it, so that a mesh's numbers are read against what the harness
// itself costs on this machine at this time.
func (r *run) calibrate(ctx context.Context, rate float64) error {
	base, ok := r.Meshes["none"]
	if !ok {
		r.Log.Logf("no baseline mesh registered: skipping the harness-floor calibration")
		return nil
	}
	r.Log.Logf("calibration: harness floor (no mesh) at %g rps", rate)
	dir := filepath.Join(r.OutDir, results.CalibrationDir, fmt.Sprintf("%grps", rate))
	tr, err := r.runSlot(ctx, slot{mesh: base, mode: scenarios.Baseline}, slotRun{dir: dir, rate: rate})
	if err != nil {
		return fmt.Errorf("calibration: %w", err)
	}
	r.manifest.Calibrations = append(r.manifest.Calibrations, results.Calibration{
		Requested: rate, Achieved: tr.Achieved, LatencyMs: tr.LatencyMs, COLatencyMs: tr.COLatencyMs,
		Errors: tr.Errors, Components: tr.Components,
	})
	return results.WriteJSON(filepath.Join(r.OutDir, results.ManifestFile), r.manifest)
}

// dropUnavailable removes the slots whose mesh cannot run here (a missing
// binary), saying so, and returns them for the manifest and the table.
func (r *run) dropUnavailable() []results.Unavailable {
	var kept []slot
	var out []results.Unavailable
	for _, sl := range r.slots {
		var why error
		switch a := sl.mesh.(type) {
		case meshes.ModeAvailability:
			why = a.AvailableIn(sl.mode)
		case meshes.Availability:
			why = a.Available()
		}
		if why != nil {
			r.Log.Logf("%s unavailable: %v", sl.key(), why)
			out = append(out, results.Unavailable{Mesh: sl.mesh.Name(), Mode: string(sl.mode), Reason: why.Error()})
			continue
		}
		kept = append(kept, sl)
	}
	r.slots = kept
	return out
}

func (r *run) writeManifest() error {
	s := r.Scenario
	pd := r.Platform.Describe()
	pd.Nodes = map[string]string{}
	for name, n := range r.nodes {
		pd.Nodes[name] = n.Addr.String()
	}
	pd.Placement = map[string]string{}
	for _, class := range []string{results.ClassLoadGen, results.ClassApp, results.ClassProxy} {
		if cpus := cpusFor(class); cpus != "" {
			pd.Placement[class] = "cpu " + cpus
		}
	}
	r.manifest = &results.Manifest{
		RunID:               r.RunID,
		Scenario:            s,
		Source:              s.Pos("").File,
		StartTime:           time.Now().UTC(),
		Meshbench:           r.Build,
		Host:                describeHost(),
		Platform:            pd,
		HistogramResolution: fmt.Sprintf("%.1f%% log-spaced buckets", (workload.HistGrowth-1)*100),
	}
	for t := 1; t <= s.Trials; t++ {
		var keys []string
		for _, sl := range order(r.slots, t, s.Order, s.Seed) {
			keys = append(keys, sl.key())
		}
		r.manifest.Order = append(r.manifest.Order, keys)
	}
	if err := results.WriteJSON(filepath.Join(r.OutDir, results.ManifestFile), r.manifest); err != nil {
		return err
	}
	data, err := smps.Marshal(smps.Environment(r.manifest))
	if err != nil {
		return err
	}
	return results.WriteFile(filepath.Join(r.OutDir, results.SMPEnvFile), data)
}

// cpusFor pins the load generator to CPU 0 and everything else to CPU 1 on
// hosts with two or more CPUs, so that the load generator does not steal
// cycles from the system under test (and the other way round).
func cpusFor(class string) string {
	if runtime.NumCPU() < 2 {
		return ""
	}
	if class == results.ClassLoadGen {
		return "0"
	}
	return "1"
}

func listenHost(n meshes.Node) string {
	if n.Local != n.Addr {
		return "0.0.0.0" // the node is a namespace of its own
	}
	return n.Addr.String()
}

// logged returns spec with its stderr, and its stdout unless it has one,
// going to files in logDir.
func (r *run) logged(logDir string, spec ProcessSpec) (ProcessSpec, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return spec, err
	}
	stderr, err := os.Create(filepath.Join(logDir, spec.Name+".stderr.log"))
	if err != nil {
		return spec, err
	}
	r.logs = append(r.logs, stderr)
	spec.Stderr = stderr
	if spec.Stdout == nil {
		stdout, err := os.Create(filepath.Join(logDir, spec.Name+".stdout.log"))
		if err != nil {
			return spec, err
		}
		r.logs = append(r.logs, stdout)
		spec.Stdout = stdout
	}
	return spec, nil
}

// deployUnit places u with the run's readiness and stop bounds.
func (r *run) deployUnit(ctx context.Context, u Unit) (Deployed, error) {
	u.ReadyTimeout, u.StopTimeout = r.ReadyTimeout, DefaultStopTimeout
	d, err := r.Platform.Deploy(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("deploy %s: %w", u.Name, err)
	}
	return d, nil
}

// startJob places one process on a node (a load client, a probe, simulated
// clients), with its logs in logDir, and returns its unit and the process.
func (r *run) startJob(ctx context.Context, logDir, node string, spec ProcessSpec) (Deployed, Process, error) {
	spec, err := r.logged(logDir, spec)
	if err != nil {
		return nil, nil, err
	}
	d, err := r.deployUnit(ctx, Unit{Name: spec.Name, Pods: []Pod{{Node: node, Processes: []ProcessSpec{spec}}}})
	if err != nil {
		return nil, nil, err
	}
	return d, d.Processes()[0], nil
}

// meterUsage opens a usage window over procs when the platform can
// measure; otherwise the window's figures are the processes' names alone.
func (r *run) meterUsage(procs []Process) func() []results.Usage {
	if m, ok := r.Platform.(UsageMeter); ok {
		return m.MeterUsage(procs)
	}
	return func() []results.Usage {
		out := make([]results.Usage, len(procs))
		for i, p := range procs {
			out[i] = results.Usage{Name: p.Name(), Source: "none: the platform cannot measure"}
		}
		return out
	}
}
