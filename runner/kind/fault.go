package kind

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	chaosv1alpha1 "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"

	"github.com/meshbench/meshbench/runner"
	"github.com/meshbench/meshbench/runner/chaos"
	"github.com/meshbench/meshbench/runner/kind/podproc"
)

var (
	_ runner.FaultInjector = (*platform)(nil)
	_ runner.FaultPreparer = (*platform)(nil)
)

// takeWait bounds the wait for a process's wrapper to take a restart
// request (it looks every 100 ms).
const takeWait = 5 * time.Second

// name is the platform's name, as results give it.
func (p *platform) name() string {
	if p.kube() {
		return "kube"
	}
	return "kind"
}

// CanInject says which actions the platform executes: PodChaos pod-kill,
// container-kill and pod-failure, on the pods' processes through their
// wrappers (package podproc), and NetworkChaos partition, loss, corrupt
// and bandwidth (a pod's whole egress), through a fault agent in each
// target pod (meshbench fault-agent), as the local platform executes
// them on its own. Chaos Mesh itself would need its images from a
// registry.
func (p *platform) CanInject(a chaos.Action) error {
	switch o := a.Object.(type) {
	case *chaosv1alpha1.PodChaos:
		switch o.Spec.Action {
		case chaosv1alpha1.PodFailureAction, chaosv1alpha1.PodKillAction:
			return nil
		case chaosv1alpha1.ContainerKillAction:
			return runner.CheckContainerKill(o.Spec.ContainerNames, p.name())
		}
	case *chaosv1alpha1.NetworkChaos:
		switch o.Spec.Action {
		case chaosv1alpha1.PartitionAction, chaosv1alpha1.LossAction, chaosv1alpha1.CorruptAction:
			return runner.CheckPacketFault(&o.Spec)
		case chaosv1alpha1.BandwidthAction:
			if o.Spec.Target != nil {
				return fmt.Errorf("bandwidth toward a target is not executed on the %s platform yet (a pod's whole egress is, without a target; the local platform executes both)", p.name())
			}
			return nil
		}
	}
	return fmt.Errorf("not executed on the %s platform yet (it executes PodChaos pod-kill, container-kill and pod-failure, and NetworkChaos partition, loss, corrupt and bandwidth; the local platform executes the rest)", p.name())
}

// Inject puts an action in force; the runner has checked it with
// CanInject before the run.
func (p *platform) Inject(ctx context.Context, in runner.Injection) (runner.Injected, error) {
	if o, ok := in.Action.Object.(*chaosv1alpha1.NetworkChaos); ok {
		return p.network(ctx, in, &o.Spec)
	}
	o, ok := in.Action.Object.(*chaosv1alpha1.PodChaos)
	if !ok {
		return runner.Injected{}, fmt.Errorf("%s: not executed on the %s platform", in.Action.Verb(), p.name())
	}
	switch o.Spec.Action {
	case chaosv1alpha1.PodKillAction:
		return p.kill(ctx, in, true, nil, time.Duration(o.Spec.GracePeriod)*time.Second)
	case chaosv1alpha1.ContainerKillAction:
		return p.kill(ctx, in, false, o.Spec.ContainerNames, 0)
	}
	return p.podFailure(in)
}

// kill kills pods and has them started again, as Kubernetes would: a
// pod-kill kills each pod's processes (SIGTERM first, grace before
// SIGKILL) and starts them runner.PodReplaceDelay later, as its
// replacement; a container-kill kills the named containers' processes
// and starts each again with the kubelet's restart back-off. Each
// process's wrapper does it in its container (the kubelet restarts no
// ephemeral container); the pod, its address and its redirects stay.
// It returns once every wrapper has taken its request. One-shot: nothing
// to recover.
func (p *platform) kill(ctx context.Context, in runner.Injection, podKill bool, containers []string, grace time.Duration) (runner.Injected, error) {
	victims, got, err := runner.KillVictims(in, podKill, containers, func(pr *process) string { return pr.class })
	if err != nil {
		return got, err
	}
	var errs []error
	for _, pr := range victims {
		errs = append(errs, pr.restart(grace, podKill))
	}
	if err := errors.Join(errs...); err != nil {
		return got, err
	}
	for _, pr := range victims {
		errs = append(errs, pr.waitTaken(ctx))
	}
	return got, errors.Join(errs...)
}

// restart asks the process's wrapper to kill it (after grace, with
// SIGTERM first) and start it again: with replace, as its pod's
// replacement (a new pod: no restart count, no failure in force), else
// after the kubelet's back-off, which the wrapper counts (a request that
// finds a restart under way is dropped there, and not counted). The
// request is written before a failure is cleared, so that the wrapper
// never resumes a process it is about to kill.
func (pr *process) restart(grace time.Duration, replace bool) error {
	p := pr.p
	p.mu.Lock()
	defer p.mu.Unlock()
	r := podproc.Restart{Grace: grace, Replace: replace, Delay: runner.PodReplaceDelay, Backoff: restartBackoff}
	if !replace {
		r.Delay = 0
	}
	if err := podproc.AskRestart(pr.base, r); err != nil {
		return fmt.Errorf("%s: %w", pr.name, err)
	}
	if replace {
		pr.gen++
		if pr.pauses > 0 {
			pr.pauses = 0
			if err := os.Remove(pr.base + podproc.CtlPause); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%s: %w", pr.name, err)
			}
		}
	}
	return nil
}

// restartBackoff is the kubelet's back-off, restart by restart, up to its
// cap.
var restartBackoff = func() []time.Duration {
	var b []time.Duration
	for n := 0; len(b) < 2 || b[len(b)-1] != b[len(b)-2]; n++ {
		b = append(b, runner.RestartBackoff(n))
	}
	return b[:len(b)-1]
}()

// waitTaken waits until the process's wrapper has taken its restart
// request, or the process has ended.
func (pr *process) waitTaken(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, takeWait)
	defer cancel()
	for {
		if _, err := os.Stat(pr.base + podproc.CtlRestart); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		select {
		case <-pr.done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%s (container %s of pod %s): its wrapper did not take the restart request within %s", pr.name, pr.container, pr.pod, takeWait)
		case <-time.After(tailInterval):
		}
	}
}

// podFailure stops the pods' processes (each its process group, through
// its wrapper) with SIGSTOP, and resumes them with SIGCONT at the end, as
// the local platform does (a stopped process keeps its sockets: requests
// wait for it, where Chaos Mesh's pause image would reset them).
// Overlapping failures of a pod are counted: it resumes when the last one
// ends; a process killed meanwhile is not started again until then; a
// pod replaced meanwhile (pod-kill) is a new pod, not failed. The wrappers act within
// their 100 ms poll.
func (p *platform) podFailure(in runner.Injection) (runner.Injected, error) {
	return runner.FailPods(in, (*process).pause)
}

// pause has the process's wrapper stop it until the returned resume is
// called (once is enough; more are harmless).
func (pr *process) pause() (resume func() error, err error) {
	p := pr.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if pr.pauses == 0 {
		if err := os.WriteFile(pr.base+podproc.CtlPause, nil, 0o644); err != nil {
			return nil, fmt.Errorf("%s: %w", pr.name, err)
		}
	}
	pr.pauses++
	gen := pr.gen
	var once sync.Once
	return func() error {
		var err error
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			if pr.gen != gen || pr.pauses == 0 {
				return // its pod was replaced meanwhile
			}
			pr.pauses--
			if pr.pauses == 0 {
				if rerr := os.Remove(pr.base + podproc.CtlPause); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
					err = fmt.Errorf("%s: %w", pr.name, rerr)
				}
			}
		})
		return err
	}, nil
}

// Bounds of the fault agents.
const (
	// agentWait bounds the wait for an agent to answer a request (it
	// looks every 50 ms).
	agentWait = 10 * time.Second
	agentStop = 30 * time.Second
)

// agent is a trial's fault agent in a node's pod: meshbench fault-agent
// in an ephemeral container, which applies the rule files written to
// its directory.
type agent struct {
	// comment marks its rules: the run's fault comment and the agent's
	// number, so that an agent that outlived its trial removes its own
	// rules at its end, not the next trial's.
	node, dir, comment string
	// handle is the handle of its bandwidth limits' qdiscs (tc's hex
	// "MAJOR:"), so that at its end it removes only its own.
	handle string
	proc   runner.Process
	out    *lockedBuffer // its output, for errors

	mu  sync.Mutex
	seq int
}

// PrepareFaults starts a fault agent in the pod of each node that a
// trial's network fault targets, before the load (an ephemeral container
// takes seconds to start). The removal stops them. Each removes, as it
// starts, any rule of the run's agents still in its pod (one killed
// before it could is the next one's to clean up), and as it ends its own.
func (p *platform) PrepareFaults(ctx context.Context, ins []runner.Injection) (func(context.Context) error, string, error) {
	var nodes []string
	for _, in := range ins {
		if _, ok := in.Action.Object.(*chaosv1alpha1.NetworkChaos); !ok {
			continue
		}
		for _, pod := range in.Pods {
			if !slices.Contains(nodes, pod.Node) {
				nodes = append(nodes, pod.Node)
			}
		}
	}
	if len(nodes) == 0 {
		return nil, "", nil
	}
	var started []*agent
	stop := func(ctx context.Context) error {
		p.mu.Lock()
		for _, a := range started {
			if p.agents[a.node] == a {
				delete(p.agents, a.node)
			}
		}
		p.mu.Unlock()
		var errs []error
		for _, a := range started {
			sctx, cancel := context.WithTimeout(ctx, agentStop)
			err := a.proc.Stop(sctx)
			cancel()
			if err == nil {
				<-a.proc.Done()
				if perr := a.proc.Err(); perr != nil && !strings.Contains(perr.Error(), "terminated") {
					err = fmt.Errorf("%v: %s", perr, strings.TrimSpace(a.out.String()))
				}
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("the fault agent of node %s: %w", a.node, err))
			}
			errs = append(errs, os.RemoveAll(a.dir))
		}
		return errors.Join(errs...)
	}
	for _, n := range nodes {
		// A directory of its own: an earlier trial's agent may still be
		// writing its answers to one it was not stopped in time to leave.
		p.mu.Lock()
		p.seq++
		a := &agent{node: n, dir: filepath.Join(p.ctl, fmt.Sprintf("faults-%s-%d", dnsLabel(n), p.seq)),
			comment: fmt.Sprintf("%s/%d", runner.FaultComment(p.o.RunID), p.seq), handle: fmt.Sprintf("%x:", p.seq%0xfffe+1),
			out: &lockedBuffer{}}
		p.mu.Unlock()
		if err := os.MkdirAll(a.dir, 0o755); err != nil {
			return nil, "", errors.Join(err, stop(context.WithoutCancel(ctx)))
		}
		pr, err := p.StartProcess(ctx, n, runner.ProcessSpec{Name: "fault-agent-" + n, Class: "fault-agent",
			Args:   []string{"fault-agent", "--dir", a.dir, "--comment", a.comment, "--clean-prefix", runner.FaultComment(p.o.RunID) + "/"},
			Stdout: a.out, Stderr: a.out})
		if err != nil {
			return nil, "", errors.Join(err, stop(context.WithoutCancel(ctx)))
		}
		a.proc = pr
		started = append(started, a)
		p.mu.Lock()
		if p.agents == nil {
			p.agents = map[string]*agent{}
		}
		p.agents[n] = a
		p.mu.Unlock()
	}
	return stop, fmt.Sprintf("fault agents (iptables, tc) in the pods of %s", strings.Join(nodes, ", ")), nil
}

// network puts a NetworkChaos action in force through the pods' fault
// agents, with the rules the local platform puts in its namespaces
// (runner.FilterRules): a partition drops (or rejects) the pods' packets
// to, from, or to and from their peers; loss and corrupt drop each of
// them with the object's probability (a corrupted packet fails its
// checksum, and its receiver drops it), to or from the target's pods or,
// without a target, every address, and count what they did; bandwidth
// limits the pods' egress.
func (p *platform) network(ctx context.Context, in runner.Injection, spec *chaosv1alpha1.NetworkChaosSpec) (runner.Injected, error) {
	got, did := runner.Injected{Executor: runner.ExecIPTables}, ""
	switch spec.Action {
	case chaosv1alpha1.PartitionAction:
		return p.filter(ctx, in, got, func(a *agent, addrs []string) [][]string {
			return runner.FilterRules(spec.Direction, "eth0", addrs, a.comment, runner.PartitionTargets(spec.PartitionBehavior))
		})
	case chaosv1alpha1.BandwidthAction:
		return p.bandwidth(ctx, in, spec.Bandwidth)
	case chaosv1alpha1.LossAction:
		got.Executor, did = runner.ExecLoss, "dropped"
	case chaosv1alpha1.CorruptAction:
		got.Executor, did = runner.ExecCorrupt, "corrupted (dropped)"
	default:
		return got, fmt.Errorf("%s: not executed on the %s platform", in.Action.Verb(), p.name())
	}
	pct, note, err := runner.PacketFault(spec)
	got.Note = note
	if err != nil {
		return got, err
	}
	// Without a target (no peers) every address, as locally.
	return p.sampled(ctx, in, got, spec.Direction, pct, did)
}

// sampled drops each packet of the fault's traffic with probability
// pct% (runner.SampledRules), and says at the end how many of how many
// it dropped (did: what a drop stands for).
func (p *platform) sampled(ctx context.Context, in runner.Injection, got runner.Injected, dir chaosv1alpha1.Direction, pct float64, did string) (runner.Injected, error) {
	p.mu.Lock()
	p.seq++
	suffix := fmt.Sprintf(":%d", p.seq)
	p.mu.Unlock()
	var agents []*agent
	got, err := p.filter(ctx, in, got, func(a *agent, addrs []string) [][]string {
		if !slices.Contains(agents, a) {
			agents = append(agents, a)
		}
		return runner.SampledRules(dir, "eth0", addrs, a.comment+suffix, pct)
	})
	if err != nil {
		return got, err
	}
	undo, outcome := got.Recover, ""
	got.Recover = func(ctx context.Context) error {
		var dropped, all uint64
		var errs []error
		for _, a := range agents {
			drop, seen := runner.SampledComments(a.comment + suffix)
			n, err := a.count(ctx, drop, seen)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			dropped, all = dropped+n[0], all+n[1]
		}
		if len(errs) == 0 {
			outcome = fmt.Sprintf("%d of %d packets %s", dropped, all, did)
		}
		return errors.Join(append(errs, undo(ctx))...)
	}
	got.Outcome = func() string { return outcome }
	return got, nil
}

// bandwidth limits each pod's egress with a token bucket filter on its
// interface, through its agent, as the local platform does
// (runner.TBFArgs).
func (p *platform) bandwidth(ctx context.Context, in runner.Injection, b *chaosv1alpha1.BandwidthSpec) (runner.Injected, error) {
	got := runner.Injected{Executor: runner.ExecTBF}
	if b == nil {
		return got, errors.New("no bandwidth given")
	}
	p.mu.Lock()
	agents, err := p.agentsOf(in)
	p.mu.Unlock()
	if err != nil {
		return got, err
	}
	var done []*agent
	undo := func(ctx context.Context) error {
		var errs []error
		for i := len(done) - 1; i >= 0; i-- {
			_, err := done[i].ask(ctx, AgentTC, []byte("qdisc del dev eth0 root handle "+done[i].handle+"\n"))
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	for _, a := range agents {
		add := "qdisc add dev eth0 root handle " + a.handle + " " + strings.Join(runner.TBFArgs(b), " ")
		if _, err := a.ask(ctx, AgentTC, []byte(add+"\n")); err != nil {
			return got, errors.Join(err, undo(context.WithoutCancel(ctx)))
		}
		done = append(done, a)
	}
	got.Recover = undo
	return got, nil
}

// filter has each target pod's agent put rules in force (rules gives
// them, for the addresses the fault acts on), each agent's as one
// transaction, and returns their removal; on error what it applied is
// removed again.
func (p *platform) filter(ctx context.Context, in runner.Injection, got runner.Injected, rules func(a *agent, addrs []string) [][]string) (runner.Injected, error) {
	addrs, agents, err := p.partitionPeers(in)
	if err != nil {
		return got, err
	}
	var done []*agent
	undo := func(ctx context.Context) error {
		var errs []error
		for i := len(done) - 1; i >= 0; i-- {
			errs = append(errs, done[i].apply(ctx, "-D", rules(done[i], addrs)))
		}
		return errors.Join(errs...)
	}
	for _, a := range agents {
		// Undone too if it fails: iptables-restore applies all or none,
		// and a rule not there is removed by the agent at its end.
		if err := a.apply(ctx, "-I", rules(a, addrs)); err != nil {
			return got, errors.Join(err, undo(context.WithoutCancel(ctx)))
		}
		done = append(done, a)
	}
	got.Recover = undo
	return got, nil
}

// partitionPeers are the addresses a network fault acts on ("" for any),
// and the pods' agents. A peer is its pod's address and the ClusterIP of
// each Service whose pods are all peers: a pod dialing a Service sends
// to its ClusterIP, which its node translates only after the packet has
// left the pod (and translates back before the answer reaches it). With
// no peer (every workload a target, or no target) it is every address,
// as locally.
func (p *platform) partitionPeers(in runner.Injection) ([]string, []*agent, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	agents, err := p.agentsOf(in)
	if err != nil {
		return nil, nil, err
	}
	if len(in.Peers) == 0 {
		return []string{""}, agents, nil
	}
	var addrs []string
	for _, peer := range in.Peers {
		pod, ok := p.pods[peer]
		if !ok {
			return nil, nil, fmt.Errorf("no node %s", peer)
		}
		addrs = append(addrs, pod.Status.PodIP)
	}
	for _, name := range slices.Sorted(maps.Keys(p.backends)) {
		nodes := p.backends[name]
		if len(nodes) > 0 && !slices.ContainsFunc(nodes, func(n string) bool { return !slices.Contains(in.Peers, n) }) {
			addrs = append(addrs, p.services[name])
		}
	}
	return addrs, agents, nil
}

// agentsOf are the fault agents of the injection's pods; p.mu is held.
func (p *platform) agentsOf(in runner.Injection) ([]*agent, error) {
	var agents []*agent
	for _, pod := range in.Pods {
		a, ok := p.agents[pod.Node]
		if !ok {
			return nil, fmt.Errorf("no fault agent in node %s's pod", pod.Node)
		}
		agents = append(agents, a)
	}
	return agents, nil
}

// apply has the agent insert (-I, each at its chain's head, in order) or
// delete (-D, in reverse) rules, as one iptables-restore transaction, and
// waits for it to say how that went.
func (a *agent) apply(ctx context.Context, op string, rules [][]string) error {
	_, err := a.ask(ctx, AgentRules, RestoreInput(op, rules))
	return err
}

// count asks the agent for the packet counters of the rules carrying each
// comment, summed per comment, in order.
func (a *agent) count(ctx context.Context, comments ...string) ([]uint64, error) {
	answer, err := a.ask(ctx, AgentCount, []byte(strings.Join(comments, "\n")+"\n"))
	if err != nil {
		return nil, err
	}
	n, err := ParseCounts(answer, comments)
	if err != nil {
		return nil, fmt.Errorf("node %s: the fault agent's counts: %w", a.node, err)
	}
	return n, nil
}

// Requests to a fault agent, by their files' extension: iptables-restore
// input; comments whose rules' packet counters it answers with (one
// line "COMMENT PACKETS" each); or tc commands, one per line (tc's
// arguments). The agent takes them in name order and answers each beside
// it: NAME.done (with the counts), or NAME.err with what failed.
const (
	AgentRules = ".rules"
	AgentCount = ".count"
	AgentTC    = ".tc"
)

// ask writes a request to the agent and waits for its answer.
func (a *agent) ask(ctx context.Context, ext string, content []byte) ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seq++
	base := filepath.Join(a.dir, fmt.Sprintf("%06d", a.seq))
	if err := os.WriteFile(base+".tmp", content, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(base+".tmp", base+ext); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, agentWait)
	defer cancel()
	for {
		if data, err := os.ReadFile(base + ".done"); err == nil {
			return data, nil
		}
		if data, err := os.ReadFile(base + ".err"); err == nil {
			return nil, fmt.Errorf("node %s: %s", a.node, data)
		}
		select {
		case <-a.proc.Done():
			return nil, fmt.Errorf("node %s: the fault agent ended (%v): %s", a.node, a.proc.Err(), strings.TrimSpace(a.out.String()))
		case <-ctx.Done():
			return nil, fmt.Errorf("node %s: the fault agent did not answer %s within %s", a.node, filepath.Base(base)+ext, agentWait)
		case <-time.After(tailInterval):
		}
	}
}

// ParseCounts reads a fault agent's answer to a count: the packets of
// each comment, in order.
func ParseCounts(answer []byte, comments []string) ([]uint64, error) {
	got := map[string]uint64{}
	for _, line := range strings.Split(strings.TrimSpace(string(answer)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %q", line)
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if _, twice := got[f[0]]; err != nil || twice {
			return nil, fmt.Errorf("line %q", line)
		}
		got[f[0]] = n
	}
	out := make([]uint64, len(comments))
	for i, c := range comments {
		n, ok := got[c]
		if !ok {
			return nil, fmt.Errorf("no count of %s in %q", c, answer)
		}
		out[i] = n
	}
	return out, nil
}

// RestoreInput is iptables-restore's input (for a fault agent) that
// inserts rules (op -I, each at its chain's head, in order) or deletes
// them (-D, in reverse), in the filter table, as one transaction.
func RestoreInput(op string, rules [][]string) []byte {
	var b strings.Builder
	b.WriteString("*filter\n")
	for i := range rules {
		r := rules[i]
		pos := ""
		switch op {
		case "-D":
			r = rules[len(rules)-1-i]
		case "-I":
			pos = " 1"
		}
		fmt.Fprintf(&b, "%s %s%s %s\n", op, r[0], pos, strings.Join(r[1:], " "))
	}
	b.WriteString("COMMIT\n")
	return []byte(b.String())
}

// lockedBuffer is a buffer that a process's output is copied to while
// errors read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(b)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
