package runner

// The topology's applications in a deployment: their components, the
// platform's load balancing over a replicated service's pods, and what
// each served.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/runner/workload"
	"github.com/meshbench/meshbench/scenarios"
)

// appComponents are the topology's services as components, enrolled as
// dep says (extra arguments, how each calls its callees).
func (r *run) appComponents(env meshes.Env, dep *meshes.Deployment) []meshes.Component {
	var out []meshes.Component
	direct := meshes.CallsVia(env, meshes.Direct)
	for _, svc := range env.Services {
		for _, pod := range svc.Pods() {
			// A pod's own enrollment (a proxyless library's node), or its
			// service's.
			app, ok := dep.Apps[pod.Name]
			if !ok {
				app, ok = dep.Apps[svc.Name]
			}
			if !ok {
				app = direct[svc.Name]
			}
			out = append(out, r.appComponent(env, pod, app))
		}
	}
	return out
}

// appComponent is one pod's application, enrolled as app says.
func (r *run) appComponent(env meshes.Env, pod meshes.Workload, app meshes.App) meshes.Component {
	args := []string{"workload", "server", "--name", pod.Name,
		"--listen", listenHost(pod.Node) + ":" + strconv.Itoa(pod.Port),
		"--payload-size", strconv.Itoa(pod.PayloadSize),
		"--delay", pod.ServiceTime.String(),
		"--protocol", env.Protocol,
	}
	if env.Protocol == scenarios.ProtocolTCP {
		args = append(args, "--echo-size", strconv.Itoa(workload.TCPPayloadSize(int(r.Scenario.Load.RequestSize))))
	}
	for _, c := range app.Calls {
		args = append(args, "--call", c.Arg())
	}
	args = append(args, app.Args...)
	if app.HTTPFaults != "" {
		args = append(args, "--http-faults-api", app.HTTPFaults)
	}
	ready := appProbe(env.Protocol, meshes.HostPort(pod.Node.Addr, pod.Port))
	c := meshes.Component{Name: pod.Name, Class: results.ClassApp, Node: pod.Node.Name, Args: args, Ready: ready, HTTPFaults: app.HTTPFaults}
	if app.Ready != nil {
		c.Ready = *app.Ready
	}
	return c
}

// appProbe is the readiness probe of a workload serving protocol at addr:
// its health path, or a connection where it serves no HTTP/1.1.
func appProbe(protocol, addr string) meshes.Probe {
	if protocol == scenarios.ProtocolGRPC || protocol == scenarios.ProtocolTCP {
		return meshes.Probe{TCP: addr}
	}
	return meshes.Probe{HTTPGet: "http://" + addr + workload.HealthPath}
}

// serviceChecks probe the services' ClusterIPs as their pods are probed:
// answered, the platform balances them (kube-proxy has its rules in).
func serviceChecks(env meshes.Env) []ServiceCheck {
	var out []ServiceCheck
	for _, svc := range env.Services {
		if svc.ClusterIP.IsValid() {
			out = append(out, ServiceCheck{Service: svc.Name, Probe: appProbe(env.Protocol, svc.Dial())})
		}
	}
	return out
}

// serviceBalancing spreads the connections each caller's node opens to a
// replicated service's address (its first pod's) over its pods, as
// kube-proxy spreads a ClusterIP's. A service with a ClusterIP needs none:
// the platform's kube-proxy balances it.
func serviceBalancing(env meshes.Env) []meshes.Redirect {
	var out []meshes.Redirect
	for _, svc := range env.Services {
		if len(svc.Replicas) == 0 || svc.ClusterIP.IsValid() {
			continue
		}
		var eps []netip.Addr
		for _, p := range svc.Pods() {
			eps = append(eps, p.Node.Addr)
		}
		var nodes []string
		for _, w := range env.Callers(svc.Name) {
			if !slices.Contains(nodes, w.Node.Name) {
				nodes = append(nodes, w.Node.Name)
				out = append(out, meshes.Redirect{Node: w.Node.Name, Service: svc.Node.Addr, Port: svc.Port, Endpoints: eps})
			}
		}
	}
	return out
}

// servedCount reads a stopped service's counts from its stdout log: the
// count it reports at exit, summed over its incarnations (each begins
// with a start event) when it was restarted by a fault's kill; an
// incarnation killed before it could report counts up to its last
// once-a-second tick, and the record says how many were (Unreported). A
// service with no count at all is marked so, not counted as idle.
func servedCount(name, logPath string) results.ServiceCount {
	out := results.ServiceCount{Name: name, Requests: -1, FirstError: "no counts: the service did not report them at exit"}
	data, err := os.ReadFile(logPath)
	if err != nil {
		return out
	}
	var total, last int64 = 0, -1 // last: the running incarnation's latest tick
	counted := false
	var firstError string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var ev struct {
			workload.ServedEvent
			Time time.Time `json:"time"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		switch ev.Event {
		case workload.EventStart:
			if last >= 0 { // the one before was killed before it reported
				total += last
				out.Unreported++
			}
			last = 0
		case workload.EventServed:
			total += ev.Requests
			out.Calls += ev.Calls
			out.CallErrors += ev.CallErrors
			out.HTTP1 += ev.HTTP1
			if firstError == "" {
				firstError = ev.FirstError
			}
			last, counted = -1, true
		case workload.EventTick:
			last, counted = ev.Requests, true
			out.Ticks = append(out.Ticks, results.Tick{Time: ev.Time, Requests: ev.Requests})
		}
	}
	if last >= 0 { // the final incarnation did not report
		total += last
		out.Unreported++
	}
	if counted {
		out.Requests, out.FirstError = total, firstError
		if out.Unreported > 0 {
			note := fmt.Sprintf("%d incarnation(s) killed before reporting: their requests counted up to their last second", out.Unreported)
			out.FirstError = strings.TrimPrefix(firstError+"; "+note, "; ")
		}
	}
	return out
}
