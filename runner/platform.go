// Package runner plans and executes an experiment: it brings a platform up,
// deploys each (mesh, mode) in turn as units of pods, drives the load,
// reads resource use, and writes every finished trial to the results
// directory (raw fortio data, SMPS documents) as soon as it ends.
//
// Platforms live in sub-packages (runner/local); the caller picks one and
// passes it in. Reports and comparisons are package reports' job.
package runner

import (
	"context"
	"io"
	"net/netip"
	"time"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/runner/results"
)

// Platform provides nodes and places units of processes on them. Its
// shape is a Kubernetes pod's: what runs on a node is declared up front
// (ordered processes, their readiness probes, the redirects of the node's
// traffic to its proxies) and placed as one unit, which the platform
// reports ready or removes again. Nothing is addressed by host PID.
type Platform interface {
	// Up creates one node per name and returns them by name.
	Up(ctx context.Context, names []string) (map[string]meshes.Node, error)
	// Deploy places a unit and returns once every process in it answers
	// its readiness probe. On error nothing of the unit is left running
	// or installed.
	Deploy(ctx context.Context, u Unit) (Deployed, error)
	// Down stops every unit and removes every resource Up and Deploy
	// created, in reverse order. It is safe to call more than once.
	Down(ctx context.Context) error
	// Describe says what the platform is, for the run manifest.
	Describe() results.Platform
}

// Unit is a set of pods placed together.
type Unit struct {
	// Name identifies the unit in logs and errors.
	Name string
	Pods []Pod
	// ReadyTimeout bounds the wait for each process's probe.
	ReadyTimeout time.Duration
	// StopTimeout is each process's grace period between SIGTERM (or
	// its platform's equivalent) and a kill.
	StopTimeout time.Duration
	// Services are probes of services' own addresses (ServiceNetwork),
	// which must answer once the applications do, before the redirects
	// go in: the platform's balancing of them is in force.
	Services []ServiceCheck
}

// Preparer is implemented by platforms whose pods are made whole before
// their processes' command lines are known: a Kubernetes pod, whose
// containers (the application's, the sidecar's, the init container that
// installs the redirect, as istio-init does) are fixed at its creation,
// and whose address comes with it. For a deployment with redirects, the
// runner gives it the workloads' pods' shapes. It makes the pods it can
// (for the nodes it chooses) and returns those nodes, with their new
// addresses, by name; the runner renders the deployment again on them,
// and Deploy places the unit in those pods, each process in its own
// container. The other nodes keep their pods. release removes the made
// pods once the units have stopped.
type Preparer interface {
	Prepare(ctx context.Context, pods []PodShape) (nodes map[string]meshes.Node, release func(context.Context) error, err error)
}

// PodShape is what a pod of a unit will run, before its configuration:
// its processes (in the unit's order) and whether it has redirects.
type PodShape struct {
	Node      string
	Processes []ProcessShape
	Redirects bool
}

// ProcessShape is a process of a PodShape.
type ProcessShape struct {
	Name, Class string
}

// ServiceCheck is a probe of a service's own address.
type ServiceCheck struct {
	Service string
	Probe   meshes.Probe
}

// ServiceNetwork is implemented by platforms that give each service an
// address of its own and spread the connections to it over the service's
// pods themselves: a Kubernetes Service's ClusterIP, which kube-proxy
// balances. Elsewhere a service's callers dial its first pod, and the
// runner spreads a replicated one's connections (meshes.Redirect.Service).
type ServiceNetwork interface {
	// Expose creates the services over their pods (nodes Up created)
	// and returns their addresses by name once the platform lists every
	// pod as one of the service's endpoints. Down removes them.
	Expose(ctx context.Context, svcs []ServiceSpec) (map[string]netip.Addr, error)
}

// ServiceSpec is a service to expose: its name, the port it and its pods
// serve on, and its pods' nodes.
type ServiceSpec struct {
	Name string
	Port int
	Pods []string
}

// Pod is what a unit runs on one node.
//
// Its processes start in order. Application processes (ClassApp) start
// first and answer their probes directly; then the redirects are put in
// force (where Kubernetes would run an init container, as istio-init
// does); then the other processes (proxies), each ready before the next.
type Pod struct {
	Node      string
	Processes []ProcessSpec
	// Redirects send the node's traffic to its proxies. A platform that
	// cannot redirect (Describe().Transparent false) refuses a pod with
	// any.
	Redirects []meshes.Redirect
}

// ProcessSpec is a process of a pod.
type ProcessSpec struct {
	// Name identifies the process in logs, errors and usage figures; it
	// is unique in its unit.
	Name string
	// Class is the component class (results.ClassApp, ClassProxy, ...).
	Class string
	// Command is an executable; empty runs the meshbench binary itself,
	// and meshes.ProxyCommand the proxy-only build where the platform has
	// it (else the meshbench binary, with the same arguments).
	Command string
	Args    []string
	// Ready is the probe that says the process serves; the zero probe
	// means it is ready once started.
	Ready meshes.Probe
	// Stdout and Stderr receive the process's output.
	Stdout, Stderr io.Writer
	// CPUs, when set, pins the process (taskset list syntax, e.g. "1").
	CPUs string
	// HTTPFaults, when set, is where the process takes HTTPChaos rules
	// itself (meshes.Component.HTTPFaults).
	HTTPFaults string
}

// Deployed is a placed unit.
type Deployed interface {
	// Processes are the unit's processes, pod by pod in start order.
	Processes() []Process
	// Stop stops the processes, last started first, each with the unit's
	// grace period, then removes the redirects. It is safe to call more
	// than once; Down stops what the caller did not.
	Stop(ctx context.Context) error
}

// Process is a running process of a deployed unit.
type Process interface {
	Name() string
	// Done is closed when the process has exited.
	Done() <-chan struct{}
	// Err is the process's exit error once Done is closed.
	Err() error
	// Stop asks the process to exit and kills it when ctx ends first. It
	// returns once the process is gone.
	Stop(ctx context.Context) error
}

// UsageMeter is implemented by platforms that can measure what their
// processes use.
type UsageMeter interface {
	// MeterUsage opens a window over procs (processes of units this
	// platform deployed); calling end closes it and returns one Usage per
	// process, in order: CPU over the window, memory sampled within it.
	MeterUsage(procs []Process) (end func() []results.Usage)
}

// Logger receives the runner's progress lines.
type Logger interface {
	Logf(format string, args ...any)
}

type nopLogger struct{}

func (nopLogger) Logf(string, ...any) {}
