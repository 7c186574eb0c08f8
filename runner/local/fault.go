package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	chaosv1alpha1 "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"
	"github.com/docker/go-units"

	"github.com/meshbench/meshbench/runner"
	"github.com/meshbench/meshbench/runner/chaos"
	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/scenarios"
)

var _ runner.FaultInjector = (*platform)(nil)

// Executors of the local platform's faults, as results name them.
const (
	execStress = "stressor in the app's cgroups and CPUs"
)

// CanInject says which actions the local platform executes: partition,
// loss, duplicate and corrupt (iptables in the pods' namespaces),
// bandwidth (tc tbf on their interface; htb toward a target), delay
// (toxiproxy spliced in, see PrepareFaults) and HTTPChaos
// (an HTTP interposer in front of the application), with netns networking
// only; pod-kill, container-kill and pod-failure (the pods' processes
// killed and started again, or stopped and resumed); and StressChaos (a
// stressor in the application's cgroups).
func (p *platform) CanInject(a chaos.Action) error {
	switch o := a.Object.(type) {
	case *chaosv1alpha1.NetworkChaos:
		switch o.Spec.Action {
		case chaosv1alpha1.PartitionAction, chaosv1alpha1.BandwidthAction, chaosv1alpha1.LossAction, chaosv1alpha1.DelayAction,
			chaosv1alpha1.DuplicateAction, chaosv1alpha1.CorruptAction:
			if p.mode != NetNS {
				return fmt.Errorf("it needs the netns network (this run's is %s: %s)", p.mode, p.reason)
			}
			if o.Spec.Action == chaosv1alpha1.DelayAction && o.Spec.Delay != nil && o.Spec.Delay.Reorder != nil {
				return fmt.Errorf("reorder needs tc netem, which the local platform does not use (a stream interposer has no packets to reorder)")
			}
			return runner.CheckPacketFault(&o.Spec)
		}
	case *chaosv1alpha1.PodChaos:
		switch o.Spec.Action {
		case chaosv1alpha1.PodFailureAction, chaosv1alpha1.PodKillAction:
			return nil
		case chaosv1alpha1.ContainerKillAction:
			return runner.CheckContainerKill(o.Spec.ContainerNames, "local")
		}
	case *chaosv1alpha1.HTTPChaos:
		switch {
		case p.mode != NetNS:
			return fmt.Errorf("it needs the netns network (this run's is %s: %s)", p.mode, p.reason)
		case o.Spec.Port != runner.ServerPort:
			return fmt.Errorf("port %d: the workloads serve on port %d", o.Spec.Port, runner.ServerPort)
		}
		return nil
	case *chaosv1alpha1.StressChaos:
		if o.Spec.Stressors == nil {
			return fmt.Errorf("no stressors")
		}
		if m := o.Spec.Stressors.MemoryStressor; m != nil && strings.HasSuffix(m.Size, "%") {
			return fmt.Errorf("a memory size in percent is of the container's memory limit, which the local platform does not set: give bytes (e.g. 256MB)")
		}
		for _, n := range o.Spec.ContainerNames {
			if n != scenarios.ContainerApp {
				return fmt.Errorf("the local platform stresses the application (containerNames [%s]), not %q", scenarios.ContainerApp, n)
			}
		}
		return nil
	}
	return fmt.Errorf("not executed on the local platform in this build yet (it executes NetworkChaos partition, loss, delay, duplicate, corrupt and bandwidth, PodChaos pod-kill, container-kill and pod-failure, HTTPChaos and StressChaos)")
}

// Inject puts an action in force.
// The runner has checked it with CanInject before the run.
func (p *platform) Inject(ctx context.Context, in runner.Injection) (runner.Injected, error) {
	switch o := in.Action.Object.(type) {
	case *chaosv1alpha1.StressChaos:
		return p.stress(ctx, in, o.Spec.Stressors)
	case *chaosv1alpha1.HTTPChaos:
		return p.httpChaos(ctx, in, &o.Spec)
	case *chaosv1alpha1.PodChaos:
		switch o.Spec.Action {
		case chaosv1alpha1.PodKillAction:
			return p.kill(in, true, nil, time.Duration(o.Spec.GracePeriod)*time.Second)
		case chaosv1alpha1.ContainerKillAction:
			return p.kill(in, false, o.Spec.ContainerNames, 0)
		}
		return p.podFailure(in)
	case *chaosv1alpha1.NetworkChaos:
		switch o.Spec.Action {
		case chaosv1alpha1.BandwidthAction:
			if o.Spec.Target != nil {
				return p.bandwidthTo(ctx, in, &o.Spec)
			}
			return p.bandwidth(ctx, in, o.Spec.Bandwidth)
		case chaosv1alpha1.LossAction:
			return p.loss(ctx, in, &o.Spec)
		case chaosv1alpha1.DelayAction:
			return p.delay(ctx, in, &o.Spec)
		case chaosv1alpha1.DuplicateAction:
			return p.duplicate(ctx, in, &o.Spec)
		case chaosv1alpha1.CorruptAction:
			return p.corrupt(ctx, in, &o.Spec)
		}
		return p.partition(ctx, in, o.Spec.Direction, o.Spec.PartitionBehavior)
	}
	return runner.Injected{}, fmt.Errorf("%s: not executed on the local platform", in.Action.Verb())
}

// partition drops the pods' packets to (direction to), from (from) or to
// and from (both) their peers' addresses, or rejects them.
func (p *platform) partition(ctx context.Context, in runner.Injection, dir chaosv1alpha1.Direction, b chaosv1alpha1.NetworkChaosPartitionBehavior) (runner.Injected, error) {
	return p.filter(ctx, in, dir, in.Peers, runner.PartitionTargets(b), runner.ExecIPTables)
}

// loss drops each packet of the pods' traffic on their interface with
// the object's probability, to or from the target's pods (every packet
// without a target): real losses, which TCP retransmits, as netem's
// would be (this kernel has no netem). iptables draws each packet
// independently: a correlation is not applied, and said so. Ahead of
// each dropping rule, a rule with the same match and no target counts
// every packet that reaches it, and the outcome says how many of them
// were dropped.
func (p *platform) loss(ctx context.Context, in runner.Injection, spec *chaosv1alpha1.NetworkChaosSpec) (runner.Injected, error) {
	got := runner.Injected{Executor: runner.ExecLoss}
	pct, note, err := runner.PacketFault(spec)
	got.Note = note
	if err != nil {
		return got, err
	}
	var peers []string
	if spec.Target != nil {
		peers = in.Peers
	}
	comment := packetComment(p.opts.RunID, in)
	rules, err := p.filterRules(in, peers, func(addrs []string) [][]string {
		return runner.SampledRules(spec.Direction, "eth0", addrs, comment, pct)
	})
	if err != nil {
		return got, err
	}
	undo, err := p.applyRules(ctx, rules, true)
	if err != nil {
		return got, err
	}
	var outcome string
	got.Recover = func(ctx context.Context) error {
		drop, seen := runner.SampledComments(comment)
		n, err := p.counted(ctx, rules, drop, seen)
		if err == nil {
			outcome = fmt.Sprintf("%d of %d packets dropped", n[0], n[1])
		}
		return errors.Join(err, undo(ctx))
	}
	got.Outcome = func() string { return outcome }
	return got, nil
}

// filter puts rules at the head of the filter table's chains in the pods'
// namespaces (filterRules), and returns their removal. The rules go with
// the namespaces, so a killed run leaves none behind.
func (p *platform) filter(ctx context.Context, in runner.Injection, dir chaosv1alpha1.Direction, peers []string, targets [][]string, executor string) (runner.Injected, error) {
	rules, err := p.filterRules(in, peers, func(addrs []string) [][]string {
		return runner.FilterRules(dir, "eth0", addrs, runner.FaultComment(p.opts.RunID), targets)
	})
	if err != nil {
		return runner.Injected{Executor: executor}, err
	}
	undo, err := p.applyRules(ctx, rules, true)
	if err != nil {
		return runner.Injected{Executor: executor}, err
	}
	return runner.Injected{Executor: executor, Recover: undo}, nil
}

// filterRules are a fault's rules in the filter table of each pod's
// namespace, as build gives them for the addresses the fault acts on:
// each peer's, or any address ("") when peers is nil.
func (p *platform) filterRules(in runner.Injection, peers []string, build func(addrs []string) [][]string) ([]nsRule, error) {
	addrs := []string{""} // any
	if peers != nil {
		addrs = nil
		p.mu.Lock()
		for _, peer := range peers {
			n, ok := p.nodes[peer]
			if !ok {
				p.mu.Unlock()
				return nil, fmt.Errorf("no node %s", peer)
			}
			addrs = append(addrs, n.Addr.String())
		}
		p.mu.Unlock()
	}
	var rules []nsRule
	for _, pod := range in.Pods {
		ns := nsName(p.opts.RunID, pod.Node)
		for _, r := range build(addrs) {
			rules = append(rules, nsRule{ns: ns, table: "filter", rule: r})
		}
	}
	return rules, nil
}

// delRootQdiscs removes the root qdisc of each namespace's interface
// (a bandwidth fault's), which gives it back its default.
func (p *platform) delRootQdiscs(ctx context.Context, namespaces []string) error {
	var errs []error
	for _, ns := range namespaces {
		if _, err := p.ex.Run(ctx, "ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "eth0", "root"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// bandwidth limits each pod's egress (its eth0) with a token bucket
// filter, as Chaos Mesh's bandwidth action does: rate, burst (buffer),
// queue limit, peak rate and its bucket as the object gives them (tc reads
// the rate's units as Chaos Mesh documents them: bps is bytes per second).
// The qdisc goes with the namespace after a SIGKILL.
func (p *platform) bandwidth(ctx context.Context, in runner.Injection, b *chaosv1alpha1.BandwidthSpec) (runner.Injected, error) {
	args := runner.TBFArgs(b)
	var done []string
	undo := func(ctx context.Context) error { return p.delRootQdiscs(ctx, done) }
	for _, pod := range in.Pods {
		ns := nsName(p.opts.RunID, pod.Node)
		if _, err := p.ex.Run(ctx, "ip", append([]string{"netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root"}, args...)...); err != nil {
			return runner.Injected{Executor: runner.ExecTBF}, errors.Join(fmt.Errorf("pod %s: %w", pod.Workload, err), undo(context.WithoutCancel(ctx)))
		}
		done = append(done, ns)
	}
	return runner.Injected{Executor: runner.ExecTBF, Recover: undo}, nil
}

// stress starts, in each pod, a stressor process (meshbench workload
// stress) in its application's cgroups and pinned to its CPUs, as Chaos
// Mesh runs stress-ng in the container's cgroup: the application competes
// with it, and its figures include it. Recovery stops the stressors, and
// fails if one had ended on its own; a killed run's die with it
// (parent-death signal).
func (p *platform) stress(ctx context.Context, in runner.Injection, st *chaosv1alpha1.Stressors) (runner.Injected, error) {
	got := runner.Injected{Executor: execStress}
	var args []string
	// Stressors with no workers do nothing, as in Chaos Mesh; a CPU load
	// of 0 is none.
	if c := st.CPUStressor; c != nil && c.Workers > 0 && (c.Load == nil || *c.Load > 0) {
		load := 100
		if c.Load != nil {
			load = *c.Load
		}
		args = append(args, "--cpu-workers", strconv.Itoa(c.Workers), "--cpu-load", strconv.Itoa(load))
	}
	if m := st.MemoryStressor; m != nil && m.Workers > 0 && m.Size != "" {
		size, err := units.FromHumanSize(m.Size)
		if err != nil {
			return got, fmt.Errorf("memory size %q: %w", m.Size, err)
		}
		args = append(args, "--memory", strconv.FormatInt(size, 10))
	}
	if len(args) == 0 {
		got.Note = "no stressor has workers and load"
		return got, nil
	}
	// A stressor's stderr is read once it has ended (its writes are over
	// when Done closes).
	type burner struct {
		pr     *process
		stderr *bytes.Buffer
	}
	var burners []burner
	ended := func(b burner) error {
		return fmt.Errorf("the stressor of %s ended on its own: %v: %s", strings.TrimSuffix(b.pr.name, "-stressor"), b.pr.Err(), strings.TrimSpace(b.stderr.String()))
	}
	stop := func(ctx context.Context) error {
		var errs []error
		for _, b := range burners {
			select {
			case <-b.pr.Done():
				errs = append(errs, ended(b))
				continue
			default:
			}
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_ = b.pr.Stop(sctx)
			cancel()
		}
		return errors.Join(errs...)
	}
	apps, none, err := runner.PodProcesses(in, func(pr *process) bool { return pr.class == results.ClassApp })
	if err != nil {
		return got, err
	}
	var notes []string
	if len(none) > 0 {
		notes = append(notes, "no application process to stress in the pod of "+strings.Join(none, ", "))
	}
	for i, pod := range in.Pods {
		if len(apps[i]) == 0 {
			continue
		}
		app := apps[i][0]
		if app.cgroups == nil {
			notes = append(notes, "the application of "+pod.Workload+" has no cgroups: the stressor competes for its CPUs, its figures do not show it")
		}
		b := burner{stderr: &bytes.Buffer{}}
		b.pr, err = p.startIn(pod.Node, runner.ProcessSpec{Name: pod.Workload + "-stressor", Class: "stressor",
			Args: append([]string{"workload", "stress"}, args...), CPUs: app.cpus, Stdout: io.Discard, Stderr: b.stderr}, app)
		if err != nil {
			return got, errors.Join(err, stop(context.WithoutCancel(ctx)))
		}
		burners = append(burners, b)
	}
	got.Note = strings.Join(notes, "; ")
	if len(burners) == 0 {
		return got, nil
	}
	// One that cannot run (its cgroup refused it) ends at once.
	select {
	case <-burners[0].pr.Done():
		return got, errors.Join(ended(burners[0]), stop(context.WithoutCancel(ctx)))
	case <-time.After(200 * time.Millisecond):
	}
	got.Recover = stop
	return got, nil
}

// kill kills pods and starts them again, as Kubernetes would: pod-kill
// kills each pod's processes (after grace, with SIGTERM
// first) and starts them runner.PodReplaceDelay later, as its replacement; a
// container-kill kills the named containers (app: the application;
// proxy: the sidecar) and starts each again with the kubelet's restart
// back-off. The sidecar re-enrolls with the control plane on its own,
// under the same identity; the namespace (the pod's address and its
// redirects) stays. One-shot: nothing to recover.
func (p *platform) kill(in runner.Injection, podKill bool, containers []string, grace time.Duration) (runner.Injected, error) {
	victims, got, err := runner.KillVictims(in, podKill, containers, func(pr *process) string { return pr.class })
	if err != nil {
		return got, err
	}
	var wg sync.WaitGroup
	for _, pr := range victims {
		delay := runner.PodReplaceDelay
		if !podKill {
			delay = pr.backoff()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pr.kill(grace, delay, podKill)
		}()
	}
	wg.Wait()
	return got, nil
}

// podFailure stops the pods' processes (each its process group) with
// SIGSTOP, as the executor for a pod whose containers no longer
// run, and resumes them with SIGCONT at the end. Unlike Chaos Mesh, which
// swaps the containers for a pause image (connections are reset, the
// containers restart), a stopped process keeps its sockets: requests wait
// for it. Overlapping failures of a pod are counted: it resumes when the
// last one ends; a container restarted meanwhile stays stopped; a pod
// replaced meanwhile (pod-kill) is a new pod, not failed. A killed run's
// stopped processes die with it (their parent-death signal is SIGKILL,
// which a stopped process takes).
func (p *platform) podFailure(in runner.Injection) (runner.Injected, error) {
	return runner.FailPods(in, (*process).pause)
}

// signalGroup signals a process group; one that is gone is no error.
func signalGroup(g int, sig syscall.Signal) error {
	if err := syscall.Kill(-g, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%v to process group %d: %w", sig, g, err)
	}
	return nil
}
