package local

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"

	chaosv1alpha1 "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/runner"
)

// Executors of HTTPChaos in the results: the HTTP interposer, and the
// fault filter of an application that serves the mesh's mTLS itself.
const (
	execHTTP    = "HTTP interposer at the application's port (behind the mesh's inbound proxy)"
	execHTTPOwn = "the application's own fault filter, behind the proxyless library's mTLS and RBAC"
)

// interposerUpstream is the address the HTTP interposer reaches the
// application at (which listens on every address of its namespace): not
// 127.0.0.1, which the redirected connections use, so that its own
// connections (not translated) and theirs (redirected) never share an
// address pair. On loopback the kernel reuses a closed connection's ports
// at once (tcp_tw_reuse), and a new connection that met the connection
// tracking entry of one of the interposer's would reach the application
// without the redirect.
var interposerUpstream = netip.MustParseAddr("127.0.0.2")

// httpFaultMark is the socket mark of the HTTP interposer's connections
// to the application, which its redirect lets pass.
const httpFaultMark = 7331

// interposeHTTP starts a node's HTTP interposer (meshbench workload
// http-faults) and redirects the connections to its application's port
// through it: those from the node itself (the mesh's inbound proxy
// handing requests to the application, on loopback or the node's
// address) at the head of OUTPUT, and those from other nodes after the
// mesh's inbound redirect in PREROUTING (taken only where there is none:
// the baseline). So it sees plain HTTP in every mode whose application
// serves plain HTTP; a proxyless application terminates mTLS itself and
// takes nothing through it, which the fault's matched count shows.
func (p *platform) interposeHTTP(ctx context.Context, node, cpus string) (func(context.Context) error, error) {
	if p.mode != NetNS {
		return nil, fmt.Errorf("it needs the netns network")
	}
	p.mu.Lock()
	n, ok := p.nodes[node]
	p.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("no node %s", node)
	}
	ns := nsName(p.opts.RunID, node)
	out, err := p.tcpSockets(ctx, ns)
	if err != nil {
		return nil, err
	}
	free := freePorts(out, 2)
	api, listen, app := meshes.HostPort(n.Addr, free[0]), strconv.Itoa(free[1]), strconv.Itoa(runner.ServerPort)
	pr, err := p.startInterposer(ctx, node, cpus, []string{"workload", "http-faults", "--api", api, "--listen", ":" + listen,
		"--upstream", meshes.HostPort(interposerUpstream, runner.ServerPort), "--mark", strconv.Itoa(httpFaultMark)}, "http://"+api+"/ready")
	if err != nil {
		return nil, err
	}
	comment := []string{"-m", "comment", "--comment", runner.FaultComment(p.opts.RunID)}
	local, err := p.applyRules(ctx, []nsRule{{ns: ns, table: "nat", rule: append([]string{"OUTPUT", "-p", "tcp", "--dport", app,
		"-m", "addrtype", "--dst-type", "LOCAL", "-m", "mark", "!", "--mark", strconv.Itoa(httpFaultMark)}, append(comment, "-j", "REDIRECT", "--to-ports", listen)...)}}, true)
	if err != nil {
		stopProcess(context.WithoutCancel(ctx), pr)
		return nil, err
	}
	remote, err := p.applyRules(ctx, []nsRule{{ns: ns, table: "nat", rule: append([]string{"PREROUTING", "-i", "eth0", "-p", "tcp", "--dport", app},
		append(comment, "-j", "REDIRECT", "--to-ports", listen)...)}}, false)
	if err != nil {
		err = errors.Join(err, local(context.WithoutCancel(ctx)))
		stopProcess(context.WithoutCancel(ctx), pr)
		return nil, err
	}
	p.mu.Lock()
	p.httpInterposers[node] = &interposer{api: api}
	p.mu.Unlock()
	return func(ctx context.Context) error {
		p.mu.Lock()
		delete(p.httpInterposers, node)
		p.mu.Unlock()
		err := errors.Join(remote(ctx), local(ctx))
		stopProcess(ctx, pr)
		return err
	}, nil
}

// ownHTTPFaults takes a node's application's own rule API (at api) as the
// node's HTTP interposer: the same rules, applied in the application.
func (p *platform) ownHTTPFaults(node, api string) func(context.Context) error {
	p.mu.Lock()
	p.httpInterposers[node] = &interposer{api: api, own: true}
	p.mu.Unlock()
	return func(context.Context) error {
		p.mu.Lock()
		delete(p.httpInterposers, node)
		p.mu.Unlock()
		return nil
	}
}

// restoreHTTPFaults puts the HTTPChaos rules in force back in node's
// application, which applies them itself and was started again (a
// container-kill or pod-kill during the fault), as Chaos Mesh keeps a
// fault on a restarted container and injects it into a replaced pod.
func (p *platform) restoreHTTPFaults(node string) {
	p.mu.Lock()
	it := p.httpInterposers[node]
	p.mu.Unlock()
	if it == nil || !it.own {
		return
	}
	if err := it.restore(context.Background()); err != nil {
		p.opts.Log.Logf("node %s: HTTP faults not put back in its application, started again: %v", node, err)
	}
}

// httpChaos puts the HTTPChaos's rule (as Chaos Mesh hands it to its
// tproxy: target, selector, actions) in each pod's HTTP interposer;
// recovery removes it and the outcome says how many requests it matched.
func (p *platform) httpChaos(ctx context.Context, in runner.Injection, sp *chaosv1alpha1.HTTPChaosSpec) (runner.Injected, error) {
	got := runner.Injected{Executor: execHTTP}
	port := sp.Port
	rule := chaosv1alpha1.PodHttpChaosRule{Port: port, PodHttpChaosBaseRule: chaosv1alpha1.PodHttpChaosBaseRule{
		Target: sp.Target, Actions: sp.PodHttpChaosActions,
		Selector: chaosv1alpha1.PodHttpChaosSelector{Port: &port, Path: sp.Path, Method: sp.Method, Code: sp.Code,
			RequestHeaders: sp.RequestHeaders, ResponseHeaders: sp.ResponseHeaders},
	}}
	name := fmt.Sprintf("fault%d-%d", in.Action.Index, toxicSeq.Add(1))
	type put struct {
		it  *interposer
		pod string
		// restores is how many incarnations of an application that
		// applies the rules itself had them put back before this rule.
		restores int
	}
	var done []put
	var matched, lost, restored int64
	remove := func(ctx context.Context) error {
		var errs []error
		for _, d := range done {
			var n struct{ Matched int64 }
			restores, err := d.it.remove(ctx, name, &n)
			if restores > d.restores {
				restored++
			}
			// An application that applies the rules itself and was
			// started again during the fault has them put back
			// (restore), unless that failed.
			var ae *apiError
			if d.it.own && errors.As(err, &ae) && ae.status == http.StatusNotFound {
				lost++
				continue
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("pod %s: %w", d.pod, err))
			}
			matched += n.Matched
		}
		return errors.Join(errs...)
	}
	for _, pod := range in.Pods {
		p.mu.Lock()
		it := p.httpInterposers[pod.Node]
		p.mu.Unlock()
		if it == nil {
			return got, errors.Join(fmt.Errorf("pod %s: no HTTP interposer in its node", pod.Workload), remove(context.WithoutCancel(ctx)))
		}
		if it.own {
			got.Executor = execHTTPOwn
		}
		restores, err := it.put(ctx, name, rule)
		if err != nil {
			return got, errors.Join(fmt.Errorf("pod %s: %w", pod.Workload, err), remove(context.WithoutCancel(ctx)))
		}
		done = append(done, put{it, pod.Workload, restores})
	}
	got.Recover = remove
	got.Outcome = func() string {
		out := fmt.Sprintf("matched %d requests", matched)
		if restored > 0 {
			out += fmt.Sprintf("; the application of %d pod(s) was started again during the fault and the rule put back in it (what it matched before the restart is not counted)", restored)
		}
		if lost > 0 {
			out += fmt.Sprintf("; the rule was gone from the application of %d pod(s) at the end (started again during the fault, it could not be put back in it)", lost)
		}
		return out
	}
	return got, nil
}
