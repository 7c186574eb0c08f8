package local

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	chaosv1alpha1 "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/runner"
	"github.com/meshbench/meshbench/runner/chaos"
)

var _ runner.FaultPreparer = (*platform)(nil)

// execDelay names the interposer's delay in the results.
const execDelay = "toxiproxy latency toxic (an interposer spliced into the pod's inbound connections)"

// interposerBase is where an interposer's ports are looked for: its API's
// and one per port it splices, each not already listening on the node.
const interposerBase = 16000

// interposerReady bounds an interposer's start.
const interposerReady = 10 * time.Second

// interposer is toxiproxy in a node's namespace, spliced into every
// connection made to the node from outside it (but those to the
// application's own HTTP fault API): a REDIRECT at the head of
// the node's PREROUTING sends each listening port's connections to a
// proxy of it, which forwards them where they were going (through the
// mesh's inbound redirect, if the node has one, as the proxy's own
// connection does not pass PREROUTING). It passes everything through
// until a fault adds a toxic, which acts on open connections too.
type interposer struct {
	api     string          // host:port of toxiproxy's API
	proxies []interposeLink // its proxies
	// own: the API is the application's own HTTP fault filter's, not an
	// interposer's (see ownHTTPFaults).
	own bool

	// An own API's rules go with the application's incarnation: the
	// rules in force are held here, in the order they were put, and put
	// back when it is started again (restore). mu orders a rule's put,
	// removal and restoring, so that a rule removed is never put back.
	mu   sync.Mutex
	held []heldRule
	// restores counts the incarnations the held rules were put back in.
	restores int
}

// heldRule is an HTTPChaos rule in force in an own API.
type heldRule struct {
	name string
	rule any
}

// restoreTimeout bounds the wait for a restarted application's rule API,
// which restoreEvery polls.
const (
	restoreTimeout = 30 * time.Second
	restoreEvery   = 50 * time.Millisecond
)

// put puts a rule in force (PUT /rules/NAME), held to be put back in an
// own API's next incarnation; it returns how many incarnations had rules
// put back before, to tell later whether the rule was restored.
func (it *interposer) put(ctx context.Context, name string, rule any) (int, error) {
	it.mu.Lock()
	defer it.mu.Unlock()
	if err := it.call(ctx, http.MethodPut, "/rules/"+name, rule, nil); err != nil {
		return 0, err
	}
	if it.own {
		it.held = append(it.held, heldRule{name, rule})
	}
	return it.restores, nil
}

// remove takes a rule out of force (DELETE /rules/NAME, its answer into
// out) and says how many incarnations had rules put back by then.
func (it *interposer) remove(ctx context.Context, name string, out any) (int, error) {
	it.mu.Lock()
	defer it.mu.Unlock()
	it.held = slices.DeleteFunc(it.held, func(h heldRule) bool { return h.name == name })
	return it.restores, it.call(ctx, http.MethodDelete, "/rules/"+name, nil, out)
}

// restore puts the held rules back in an own API whose application was
// started again, once it answers (within restoreTimeout).
func (it *interposer) restore(ctx context.Context) error {
	deadline := time.Now().Add(restoreTimeout)
	for {
		it.mu.Lock()
		if len(it.held) == 0 {
			it.mu.Unlock()
			return nil
		}
		err := it.call(ctx, http.MethodPut, "/rules/"+it.held[0].name, it.held[0].rule, nil)
		if err == nil {
			for _, h := range it.held[1:] {
				err = errors.Join(err, it.call(ctx, http.MethodPut, "/rules/"+h.name, h.rule, nil))
			}
			// Counted only when every rule is back: one that is not is
			// found gone at its removal, and said to be lost.
			if err == nil {
				it.restores++
			}
			it.mu.Unlock()
			return err
		}
		it.mu.Unlock()
		// An answer other than 2xx is the application's word: final.
		var ae *apiError
		if errors.As(err, &ae) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(restoreEvery):
		}
	}
}

// interposeLink is one of an interposer's proxies: the connections to a
// port of its node from one peer node, or from any other (from "").
type interposeLink struct {
	name, from string
}

// delayPeers are, per node, the peer nodes whose connections into it a
// delay with a target acts on apart from the rest: the target's for the
// selected pods' nodes, and theirs for the target's.
func delayPeers(in runner.Injection, peers map[string][]string) {
	o, ok := in.Action.Object.(*chaosv1alpha1.NetworkChaos)
	if !ok || o.Spec.Action != chaosv1alpha1.DelayAction || o.Spec.Target == nil {
		return
	}
	add := func(node, from string) {
		if node != from && !slices.Contains(peers[node], from) {
			peers[node] = append(peers[node], from)
		}
	}
	for _, pod := range in.Pods {
		for _, peer := range in.Peers {
			add(pod.Node, peer)
			add(peer, pod.Node)
		}
	}
}

// interposed says which interposer executes an action: toxiproxy
// (execDelay), the HTTP interposer (execHTTP), or none.
func interposed(a chaos.Action) string {
	switch o := a.Object.(type) {
	case *chaosv1alpha1.NetworkChaos:
		if o.Spec.Action == chaosv1alpha1.DelayAction {
			return execDelay
		}
	case *chaosv1alpha1.HTTPChaos:
		return execHTTP
	}
	return ""
}

// PrepareFaults splices interposers into the nodes of the pods that
// delays (toxiproxy) and HTTPChaos (the HTTP interposer) will act on,
// before the load starts: a fault added to an interposer acts on the
// connections already open through it, which a redirect installed
// mid-load would not catch (keep-alive connections outlive it). Every
// connection into those pods made after it passes through it for the
// whole trial, in every (mesh, mode) alike: one more hop, and a pod that
// is gone shows to its callers as a connection the interposer accepted
// and closed (or, through the HTTP interposer, a 502) rather than one
// refused. The trial's events say where interposers were spliced.
func (p *platform) PrepareFaults(ctx context.Context, ins []runner.Injection) (func(context.Context) error, string, error) {
	cpus := map[string]string{}
	nodes := map[string][]string{} // per interposer
	peers := map[string][]string{} // per node, see delayPeers
	// own are the nodes whose application applies HTTP faults itself
	// (ProcessSpec.HTTPFaults): its API's address.
	own := map[string]string{}
	for _, in := range ins {
		kind := interposed(in.Action)
		if kind == "" {
			continue
		}
		for _, pod := range in.Pods {
			if len(pod.Processes) > 0 {
				if pr, ok := pod.Processes[0].(*process); ok && cpus[pod.Node] == "" {
					cpus[pod.Node] = pr.cpus
				}
			}
			for _, proc := range pod.Processes {
				if pr, ok := proc.(*process); ok && pr.httpFaults != "" {
					own[pod.Node] = pr.httpFaults
				}
			}
		}
		delayPeers(in, peers)
		for _, pod := range in.Pods {
			if !slices.Contains(nodes[kind], pod.Node) {
				nodes[kind] = append(nodes[kind], pod.Node)
			}
		}
	}
	for node := range peers {
		if !slices.Contains(nodes[execDelay], node) {
			nodes[execDelay] = append(nodes[execDelay], node)
		}
		if cpus[node] == "" { // a target's node: its processes' CPUs
			cpus[node] = p.nodeCPUs(node)
		}
	}
	slices.Sort(nodes[execDelay])
	if len(nodes) == 0 {
		return nil, "", nil
	}
	var undos []func(context.Context) error
	undo := func(ctx context.Context) error {
		var errs []error
		for i := len(undos) - 1; i >= 0; i-- {
			errs = append(errs, undos[i](ctx))
		}
		return errors.Join(errs...)
	}
	var said, saidHTTP []string
	// toxiproxy first: it splices what listens before the HTTP
	// interposer does.
	for _, node := range nodes[execDelay] {
		u, ports, err := p.interpose(ctx, node, cpus[node], peers[node], own[node])
		if errors.Is(err, errNothingListens) {
			said = append(said, node+" (nothing listens there: no connection to delay)")
			continue
		}
		if err != nil {
			return nil, "", errors.Join(fmt.Errorf("interposer in %s: %w", node, err), undo(context.WithoutCancel(ctx)))
		}
		undos = append(undos, u)
		apart := ""
		if len(peers[node]) > 0 {
			apart = "; those from " + strings.Join(peers[node], ", ") + " apart"
		}
		said = append(said, fmt.Sprintf("%s (ports %s%s)", node, ports, apart))
	}
	var saidOwn []string
	for _, node := range nodes[execHTTP] {
		if api := own[node]; api != "" {
			undos = append(undos, p.ownHTTPFaults(node, api))
			saidOwn = append(saidOwn, node)
			continue
		}
		u, err := p.interposeHTTP(ctx, node, cpus[node])
		if err != nil {
			return nil, "", errors.Join(fmt.Errorf("HTTP interposer in %s: %w", node, err), undo(context.WithoutCancel(ctx)))
		}
		undos = append(undos, u)
		saidHTTP = append(saidHTTP, node)
	}
	var notes []string
	if len(said) > 0 {
		notes = append(notes, "interposer spliced into the connections into "+strings.Join(said, ", "))
	}
	if len(saidHTTP) > 0 {
		notes = append(notes, fmt.Sprintf("HTTP interposer spliced in front of the application (port %d) of %s", runner.ServerPort, strings.Join(saidHTTP, ", ")))
	}
	if len(saidOwn) > 0 {
		notes = append(notes, "HTTP faults applied by the application itself in "+strings.Join(saidOwn, ", "))
	}
	return undo, strings.Join(notes, "; "), nil
}

// tcpSockets are a node's namespace's TCP sockets as /proc/net/tcp and
// tcp6 list them (see listeningPorts).
func (p *platform) tcpSockets(ctx context.Context, ns string) (string, error) {
	return p.ex.Run(ctx, "ip", "netns", "exec", ns, "cat", "/proc/net/tcp", "/proc/net/tcp6")
}

// freePorts are n ports from interposerBase up on which nothing listens
// in the namespace whose sockets procNet lists.
func freePorts(procNet string, n int) []int {
	used := listeningPorts(procNet, netip.Addr{})
	var ports []int
	for port := interposerBase; len(ports) < n; port++ {
		if !slices.Contains(used, port) {
			ports = append(ports, port)
		}
	}
	return ports
}

// startInterposer starts an interposer process in a node and waits until
// its API answers ready.
func (p *platform) startInterposer(ctx context.Context, node, cpus string, args []string, ready string) (*process, error) {
	stderr := &bytes.Buffer{}
	pr, err := p.startIn(node, runner.ProcessSpec{Name: node + "-" + args[1], Class: "interposer", Args: args, CPUs: cpus,
		Stdout: io.Discard, Stderr: stderr}, nil)
	if err != nil {
		return nil, err
	}
	if err := runner.WaitReady(ctx, pr, meshes.Probe{HTTPGet: ready}, interposerReady); err != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = pr.Stop(sctx)
		return nil, fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return pr, nil
}

// stopProcess stops an interposer within a few seconds.
func stopProcess(ctx context.Context, pr *process) {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = pr.Stop(sctx)
}

// nodeCPUs are the CPUs of the first pinned process started in a node,
// where an interposer spliced into it runs too; "" when none is pinned.
func (p *platform) nodeCPUs(node string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.procs {
		if pr.node == node && pr.cpus != "" {
			return pr.cpus
		}
	}
	return ""
}

// interpose starts a node's interposer and redirects the connections into
// the node through it: those from each of peers through proxies of their
// own, so that a fault can act on them alone. The port of apart
// (host:port, may be empty) is left out: the application's own HTTP
// fault API, which the platform itself calls.
func (p *platform) interpose(ctx context.Context, node, cpus string, peers []string, apart string) (func(context.Context) error, string, error) {
	if p.mode != NetNS {
		return nil, "", fmt.Errorf("it needs the netns network")
	}
	p.mu.Lock()
	n, ok := p.nodes[node]
	inbound := maps.Clone(p.inbound[node])
	from := map[string]netip.Addr{}
	for _, peer := range peers {
		if pn, found := p.nodes[peer]; found {
			from[peer] = pn.Addr
		} else {
			ok = false
		}
	}
	p.mu.Unlock()
	if !ok {
		return nil, "", fmt.Errorf("no node %s or one of %s", node, strings.Join(peers, ", "))
	}
	ns := nsName(p.opts.RunID, node)
	out, err := p.tcpSockets(ctx, ns)
	if err != nil {
		return nil, "", err
	}
	listening := listeningPorts(out, n.Addr)
	if ap, err := netip.ParseAddrPort(apart); err == nil {
		listening = slices.DeleteFunc(listening, func(port int) bool { return port == int(ap.Port()) })
	}
	if len(listening) == 0 {
		return nil, "", errNothingListens
	}
	free := freePorts(out, len(listening)*(1+len(peers))+1)
	it := &interposer{api: meshes.HostPort(n.Addr, free[0])}
	args := []string{"workload", "interpose", "--api", it.api}
	var rules []nsRule
	free = free[1:]
	// Each peer's rules after the rest's: each goes to the chain's head,
	// so theirs come first.
	for _, peer := range append([]string{""}, peers...) {
		for _, port := range listening {
			name, listen := "port-"+strconv.Itoa(port), free[0]
			free = free[1:]
			match := []string{"PREROUTING", "-i", "eth0", "-p", "tcp", "--dport", strconv.Itoa(port)}
			if peer != "" {
				name += "-from-" + peer
				match = append(match, "-s", from[peer].String())
			}
			up := port
			if to, ok := inbound[port]; ok {
				up = to // where the mesh's inbound redirect sends it
			}
			it.proxies = append(it.proxies, interposeLink{name: name, from: peer})
			args = append(args, "--proxy", name+"="+meshes.HostPort(n.Addr, listen)+"="+meshes.HostPort(n.Addr, up))
			rules = append(rules, nsRule{ns: ns, table: "nat", rule: append(match,
				"-m", "comment", "--comment", runner.FaultComment(p.opts.RunID), "-j", "REDIRECT", "--to-ports", strconv.Itoa(listen))})
		}
	}
	pr, err := p.startInterposer(ctx, node, cpus, args, "http://"+it.api+"/version")
	if err != nil {
		return nil, "", err
	}
	unredirect, err := p.applyRules(ctx, rules, true)
	if err != nil {
		stopProcess(context.WithoutCancel(ctx), pr)
		return nil, "", err
	}
	p.mu.Lock()
	p.interposers[node] = it
	p.mu.Unlock()
	ports := make([]string, len(listening))
	for i, port := range listening {
		ports[i] = strconv.Itoa(port)
	}
	return func(ctx context.Context) error {
		p.mu.Lock()
		delete(p.interposers, node)
		p.mu.Unlock()
		err := unredirect(ctx)
		stopProcess(ctx, pr)
		return err
	}, strings.Join(ports, ", "), nil
}

// listeningPorts are the TCP ports listening on addr or on every address
// (on any address when addr is the zero Addr),
// from /proc/net/tcp and tcp6 (a header line, then one socket a line:
// "sl local_address rem_address st ...", addresses as hex words in host
// byte order, state 0A for LISTEN), sorted.
func listeningPorts(procNet string, addr netip.Addr) []int {
	var ports []int
	for _, line := range strings.Split(procNet, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "0A" {
			continue
		}
		host, port, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		raw, err := hex.DecodeString(host)
		if err != nil || len(raw)%4 != 0 {
			continue
		}
		for i := 0; i < len(raw); i += 4 { // each word to network order
			slices.Reverse(raw[i : i+4])
		}
		a, ok := netip.AddrFromSlice(raw)
		if !ok {
			continue
		}
		if a = a.Unmap(); addr.IsValid() && !a.IsUnspecified() && a != addr {
			continue
		}
		n, err := strconv.ParseUint(port, 16, 16)
		if err == nil && !slices.Contains(ports, int(n)) {
			ports = append(ports, int(n))
		}
	}
	slices.Sort(ports)
	return ports
}

// errNothingListens is an interposer's node on which no port is
// reachable from other nodes: there is no connection into it to delay.
var errNothingListens = errors.New("nothing listens on the node's address")

// toxicSeq numbers the toxics of a run's delays.
var toxicSeq atomic.Int64

// delayed is one stream a delay acts on: on node's interposer, the
// connections from a peer node (from "": every connection into it), the
// bytes its node sends back (downstream) or receives (upstream).
type delayed struct {
	node, from, stream string
}

// delayedStreams are the streams a delay acts on. Without a target, the
// bytes each pod sends back on the connections into it: its egress
// (direction to, the only one Chaos Mesh allows without a target). With
// one, the selected pods' bytes to the target's (to), the target's to
// them (from), or both, on the connections either side opened: those
// into a pod from a peer and those into a peer from a pod.
func delayedStreams(in runner.Injection, dir chaosv1alpha1.Direction, hasTarget bool) []delayed {
	const down, up = "downstream", "upstream"
	var out []delayed
	// add skips a stream already there: with direction both, a pod that
	// is both selected and a target gives its streams twice.
	add := func(ds ...delayed) {
		for _, d := range ds {
			if !slices.Contains(out, d) {
				out = append(out, d)
			}
		}
	}
	for _, pod := range in.Pods {
		if !hasTarget {
			add(delayed{pod.Node, "", down})
			continue
		}
		for _, peer := range in.Peers {
			if peer == pod.Node {
				continue
			}
			if dir == chaosv1alpha1.To || dir == chaosv1alpha1.Both || dir == "" {
				add(delayed{pod.Node, peer, down}, delayed{peer, pod.Node, up})
			}
			if dir == chaosv1alpha1.From || dir == chaosv1alpha1.Both {
				add(delayed{pod.Node, peer, up}, delayed{peer, pod.Node, down})
			}
		}
	}
	return out
}

// delay adds a latency toxic to the interposers' proxies of the streams
// it acts on (see delayedStreams). toxiproxy delays each chunk by latency
// plus or minus a uniform jitter, in whole milliseconds.
func (p *platform) delay(ctx context.Context, in runner.Injection, spec *chaosv1alpha1.NetworkChaosSpec) (runner.Injected, error) {
	got := runner.Injected{Executor: execDelay}
	d := spec.Delay
	if d == nil {
		return got, fmt.Errorf("no delay given")
	}
	latency, err := time.ParseDuration(d.Latency)
	if err != nil {
		return got, fmt.Errorf("latency %q: %w", d.Latency, err)
	}
	var jitter time.Duration
	if d.Jitter != "" {
		if jitter, err = time.ParseDuration(d.Jitter); err != nil {
			return got, fmt.Errorf("jitter %q: %w", d.Jitter, err)
		}
	}
	var notes []string
	ms := func(d time.Duration) int64 {
		r := d.Round(time.Millisecond)
		if r != d {
			notes = append(notes, fmt.Sprintf("%s applied as %s (whole milliseconds)", d, r))
		}
		return r.Milliseconds()
	}
	attrs := map[string]int64{"latency": ms(latency), "jitter": ms(jitter)}
	if n := runner.Uncorrelated(d.Correlation, "delay"); n != "" {
		notes = append(notes, n)
	}
	if spec.Target == nil {
		notes = append(notes, "connections the pod opens itself are not delayed")
	}
	got.Note = strings.Join(notes, "; ")
	type added struct {
		it           *interposer
		proxy, toxic string
	}
	var done []added
	remove := func(ctx context.Context) error {
		var errs []error
		for i := len(done) - 1; i >= 0; i-- {
			a := done[i]
			errs = append(errs, a.it.call(ctx, http.MethodDelete, "/proxies/"+a.proxy+"/toxics/"+a.toxic, nil, nil))
		}
		return errors.Join(errs...)
	}
	seq := toxicSeq.Add(1)
	var silent []string
	for _, ds := range delayedStreams(in, spec.Direction, spec.Target != nil) {
		p.mu.Lock()
		it := p.interposers[ds.node]
		p.mu.Unlock()
		if it == nil { // nothing listens there (see PrepareFaults)
			if !slices.Contains(silent, ds.node) {
				silent = append(silent, ds.node)
			}
			continue
		}
		for _, px := range it.proxies {
			if ds.from != "" && px.from != ds.from {
				continue
			}
			name := fmt.Sprintf("fault%d-%d-%s", in.Action.Index, seq, ds.stream)
			body := map[string]any{"name": name, "type": "latency", "stream": ds.stream, "toxicity": 1, "attributes": attrs}
			if err := it.call(ctx, http.MethodPost, "/proxies/"+px.name+"/toxics", body, nil); err != nil {
				return got, errors.Join(fmt.Errorf("node %s: %w", ds.node, err), remove(context.WithoutCancel(ctx)))
			}
			done = append(done, added{it, px.name, name})
		}
	}
	if len(silent) > 0 {
		notes = append(notes, "nothing listens on "+strings.Join(silent, ", ")+": no connection into it to delay")
		got.Note = strings.Join(notes, "; ")
	}
	got.Recover = remove
	return got, nil
}

// apiClient makes the interposers' API calls, each on a connection of its
// own: they are seconds apart, and toxiproxy's API server closes a
// connection idle for 10 s (its read timeout), so a kept-alive one could
// be reused as it closes (a fault of 10 s failed to recover with EOF).
var apiClient = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

// call makes one request of the interposer's API, which must answer 2xx,
// and decodes its JSON answer into out, when out is not nil.
func (it *interposer) call(ctx context.Context, method, path string, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	answer, err := it.do(ctx, method, path, body)
	if err != nil || out == nil {
		return err
	}
	if err := json.Unmarshal(answer, out); err != nil {
		return fmt.Errorf("interposer: %s %s: %w", method, path, err)
	}
	return nil
}

// do makes one request of the interposer's API and returns its answer,
// which must be 2xx.
func (it *interposer) do(ctx context.Context, method, path string, body any) ([]byte, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+it.api+path, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := apiClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("interposer: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return nil, &apiError{fmt.Sprintf("interposer: %s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(msg))), resp.StatusCode}
	}
	return msg, nil
}

// apiError is an answer of an interposer's API that is not 2xx.
type apiError struct {
	msg    string
	status int
}

func (e *apiError) Error() string { return e.msg }
