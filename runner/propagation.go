package runner

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"gonum.org/v1/gonum/stat"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/reports"
	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/smps"
)

// propagationPoll is how often the control plane is asked how far a
// change has reached. The times themselves are the control plane's, taken
// as each acknowledgement arrives: the poll only decides when to move on.
const propagationPoll = 100 * time.Millisecond

// benchControlPlanes runs the control-plane benchmark on every (mesh,
// mode): each step's files and the manifest are written as it finishes.
func (r *run) benchControlPlanes(ctx context.Context) error {
	for _, sl := range r.slots {
		r.Log.Logf("control-plane benchmark: %s", sl.key())
		if err := r.benchControlPlane(ctx, sl); err != nil {
			return fmt.Errorf("%s: %w", sl.key(), err)
		}
	}
	return nil
}

// benchControlPlane deploys one (mesh, mode) and, for each client count,
// connects simulated clients beside the deployment's own, makes each kind
// of change Repeats times (the kinds interleaved, so that drift on the
// machine spreads over all of them), and records how each propagated.
func (r *run) benchControlPlane(ctx context.Context, sl slot) error {
	c := r.Scenario.ControlPlane
	d, err := r.deploy(ctx, sl, filepath.Join(r.OutDir, results.ControlPlaneDir(sl.mesh.Name(), string(sl.mode))))
	if err != nil {
		return err
	}
	defer d.stop(ctx, r.Log)
	dep := d.dep
	if dep.ControlPlane == nil || dep.SimulatedClients == nil || dep.Change == nil || dep.Propagation == nil {
		return errors.New("the deployment has no control plane to benchmark")
	}
	var cp Process
	for _, p := range d.procs {
		if p.comp.Name == dep.ControlPlane.Name {
			cp = p.proc
		}
	}
	// The deployment's own clients are connected once it is ready (each
	// proxy and proxyless workload is ready once configured).
	first, err := r.awaitClients(ctx, dep, 0, c.Timeout.D())
	if err != nil {
		return fmt.Errorf("the deployment's own clients: %w", err)
	}
	own := first.Connected
	for _, n := range c.Clients {
		step, err := r.benchStep(ctx, sl, dep, cp, own, n)
		if err != nil {
			return fmt.Errorf("%d clients: %w", n, err)
		}
		r.manifest.ControlPlane = append(r.manifest.ControlPlane, *step)
		if err := results.WriteJSON(filepath.Join(r.OutDir, results.ManifestFile), r.manifest); err != nil {
			return err
		}
	}
	return nil
}

// benchStep is one client count: simulated clients up to n, the changes,
// and the step's files.
func (r *run) benchStep(ctx context.Context, sl slot, dep *meshes.Deployment, cp Process, own, n int) (*results.ControlPlaneStep, error) {
	c := r.Scenario.ControlPlane
	rel := results.ControlPlaneStepDir(sl.mesh.Name(), string(sl.mode), n)
	dir := filepath.Join(r.OutDir, rel)
	sim := max(n-own, 0)
	step := &results.ControlPlaneStep{Mesh: sl.mesh.Name(), Mode: string(sl.mode), Clients: own + sim, Simulated: sim, Path: rel}
	if sim == 0 {
		r.Log.Logf("%d clients: the deployment's own %d clients are all there are", n, own)
	} else {
		sc := dep.SimulatedClients
		if i := slices.Index(sc.Args, "--replica-of"); i >= 0 && i+1 < len(sc.Args) {
			step.ReplicaOf = sc.Args[i+1]
		}
		args := append(slices.Clone(sc.Args), "--count", strconv.Itoa(sim), "--prefix", fmt.Sprintf("sim%d-", n))
		started := time.Now()
		job, _, err := r.startJob(ctx, filepath.Join(dir, results.LogsDir), sc.Node, ProcessSpec{
			Name: sc.Name, Class: sc.Class, Command: sc.Command, Args: args, CPUs: cpusFor(sc.Class),
		})
		if err != nil {
			return nil, err
		}
		defer func() { _ = job.Stop(ctx) }()
		if _, err := r.awaitClients(ctx, dep, own+sim, max(c.Timeout.D(), time.Duration(sim)*time.Millisecond)); err != nil {
			return nil, fmt.Errorf("simulated clients: %w", err)
		}
		step.ConnectSeconds = time.Since(started).Seconds()
	}
	r.Log.Logf("%d clients connected (%d simulated); %d changes of each kind: %v", step.Clients, sim, c.Repeats, c.Changes)

	step.Changes = make([]results.ChangePropagation, len(c.Changes))
	for i, kind := range c.Changes {
		step.Changes[i].Change = kind
	}
	endUsage := r.meterUsage([]Process{cp})
	for range c.Repeats {
		for i, kind := range c.Changes {
			rep, err := r.change(ctx, dep, kind, step.Clients)
			if err != nil {
				endUsage()
				return nil, fmt.Errorf("%s change: %w", kind, err)
			}
			step.Changes[i].Repeats = append(step.Changes[i].Repeats, rep)
		}
	}
	step.ControlPlane = endUsage()[0]
	for i := range step.Changes {
		summarizeChange(&step.Changes[i])
		ch := step.Changes[i]
		r.Log.Logf("%d clients, %s change: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, all %.1f ms (medians of %d); %d missed",
			step.Clients, ch.Change, ch.LatencyMs.P50, ch.LatencyMs.P90, ch.LatencyMs.P99, ch.LatencyMs.Max, len(ch.Repeats), ch.Missed)
	}
	if err := results.WriteJSON(filepath.Join(dir, results.ControlPlaneFile), step); err != nil {
		return nil, err
	}
	data, err := smps.Marshal(smps.ControlPlaneConfig(r.manifest, step))
	if err != nil {
		return nil, err
	}
	if err := results.WriteFile(filepath.Join(dir, results.SMPMeshFile), data); err != nil {
		return nil, err
	}
	return step, nil
}

// awaitClients waits until want clients (any number, when want is 0) are
// connected to the control plane and all run the configuration in force.
func (r *run) awaitClients(ctx context.Context, dep *meshes.Deployment, want int, timeout time.Duration) (meshes.Propagation, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		p, err := dep.Propagation(ctx)
		if err == nil && p.Connected > 0 && (want == 0 || p.Connected == want) && p.Current == p.Connected {
			return p, nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return p, err
			}
			return p, fmt.Errorf("%d clients connected (want %d), %d of them configured, after %s", p.Connected, want, p.Current, timeout)
		case <-time.After(propagationPoll):
		}
	}
}

// change makes one change and waits until every client it changed has
// acknowledged it, or the timeout passes (the clients still missing are
// counted, not waited for).
func (r *run) change(ctx context.Context, dep *meshes.Deployment, kind string, clients int) (results.ChangeRepeat, error) {
	timeout := r.Scenario.ControlPlane.Timeout.D()
	if err := dep.Change(ctx, kind); err != nil {
		return results.ChangeRepeat{}, err
	}
	deadline := time.Now().Add(timeout)
	for {
		p, err := dep.Propagation(ctx)
		if err != nil {
			return results.ChangeRepeat{}, err
		}
		if p.Connected != clients {
			return results.ChangeRepeat{}, fmt.Errorf("%d clients connected, want %d: clients left during the change", p.Connected, clients)
		}
		if p.Changed == 0 {
			return results.ChangeRepeat{}, fmt.Errorf("the change reached no client")
		}
		done := len(p.AckedAfter) == p.Changed
		if done || time.Now().After(deadline) {
			return results.ChangeRepeat{Version: p.Version, Changed: p.Changed, Acked: len(p.AckedAfter), LatencyMs: propagationLatency(p.AckedAfter)}, nil
		}
		select {
		case <-ctx.Done():
			return results.ChangeRepeat{}, ctx.Err()
		case <-time.After(propagationPoll):
		}
	}
}

// propagationLatency are nearest-rank percentiles of sorted times.
func propagationLatency(sorted []time.Duration) results.PropagationLatency {
	if len(sorted) == 0 {
		return results.PropagationLatency{}
	}
	msecs := make([]float64, len(sorted))
	for i, d := range sorted {
		msecs[i] = float64(d) / float64(time.Millisecond)
	}
	at := func(q float64) float64 { return stat.Quantile(q, stat.Empirical, msecs, nil) }
	return results.PropagationLatency{P50: at(0.5), P90: at(0.9), P99: at(0.99), Max: msecs[len(msecs)-1]}
}

// summarizeChange sets a change's medians over its repeats, its worst
// time and its missed acknowledgements.
func summarizeChange(ch *results.ChangePropagation) {
	var p50, p90, p99, all []float64
	ch.WorstMs, ch.Missed = 0, 0
	for _, r := range ch.Repeats {
		p50 = append(p50, r.LatencyMs.P50)
		p90 = append(p90, r.LatencyMs.P90)
		p99 = append(p99, r.LatencyMs.P99)
		all = append(all, r.LatencyMs.Max)
		ch.WorstMs = max(ch.WorstMs, r.LatencyMs.Max)
		ch.Missed += r.Changed - r.Acked
	}
	ch.LatencyMs = results.PropagationLatency{P50: reports.Median(p50), P90: reports.Median(p90), P99: reports.Median(p99), Max: reports.Median(all)}
}
