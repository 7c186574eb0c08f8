// Package results holds the data a run leaves behind, as pure data: the run
// manifest and one Trial per (mesh, mode, trial), plus the directory layout
// and the atomic writes that keep a crashed run's finished trials intact.
//
// The runner writes these types; smps and reports read them. This package
// has no behaviour beyond reading and writing files.
package results

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"github.com/meshbench/meshbench/scenarios"
)

// File names inside a results directory.
const (
	ManifestFile    = "manifest.json"
	SummaryJSONFile = "summary.json"
	SummaryTextFile = "summary.txt"
	TrialFile       = "trial.json"
	FortioFile      = "fortio.json"
	SMPConfigFile   = "smp-config.json"
	SMPResultFile   = "smp-result.json"
	SMPMeshFile     = "smp-mesh-config.json"
	// ConformanceFile holds a conformance run's outcomes.
	ConformanceFile = "conformance.json"
	// ControlPlaneFile is a control-plane benchmark step's record.
	ControlPlaneFile = "control-plane.json"
	COFile           = "co-latency.json"
	LatencyFile      = "latency.json"
	SeriesFile       = "series.json"
	CalibrationDir   = "calibration"
	SMPEnvFile       = "smp-environment.json"
	LogsDir          = "logs"
)

// Manifest describes a run: what was asked, on what, by which meshbench.
type Manifest struct {
	RunID     string              `json:"runID"`
	Scenario  *scenarios.Scenario `json:"scenario"`
	Source    string              `json:"source"`
	StartTime time.Time           `json:"startTime"`
	Meshbench Build               `json:"meshbench"`
	Host      Host                `json:"host"`
	Platform  Platform            `json:"platform"`
	// HistogramResolution is the bucket resolution of the latency histograms
	// that the recorded percentiles come from.
	HistogramResolution string `json:"histogramResolution"`
	// Order lists the (mesh/mode) order of each trial.
	Order [][]string `json:"order"`
	// Calibrations are the harness floor measured before the trials, one
	// per rate.
	Calibrations []Calibration `json:"calibrations,omitempty"`
	// Unavailable lists the (mesh, mode) pairs of the scenario that could
	// not run on this host, and why.
	Unavailable []Unavailable `json:"unavailable,omitempty"`
	// Max holds every max search's outcome, per (mesh, mode, trial).
	Max []MaxResult `json:"max,omitempty"`
	// ControlPlane holds a control-plane benchmark's steps, one per
	// (mesh, mode, client count), each added as it finishes.
	ControlPlane []ControlPlaneStep `json:"controlPlane,omitempty"`
}

// ControlPlaneStep is one client count of a control-plane benchmark: the
// clients connected, and how each kind of change propagated to them.
type ControlPlaneStep struct {
	Mesh string `json:"mesh"`
	Mode string `json:"mode"`
	// Clients are the xDS clients connected; Simulated, how many of them
	// were simulated (the rest are the deployment's own), each a replica
	// of ReplicaOf's configuration.
	Clients   int    `json:"clients"`
	Simulated int    `json:"simulated"`
	ReplicaOf string `json:"replicaOf,omitempty"`
	// ConnectSeconds is how long the simulated clients took to connect
	// and acknowledge their first configuration.
	ConnectSeconds float64 `json:"connectSeconds"`
	// Changes is each kind of change's propagation.
	Changes []ChangePropagation `json:"changes"`
	// ControlPlane is the control plane's usage while the changes were
	// made (CPU over the whole window, idle time between changes
	// included; memory sampled through it).
	ControlPlane Usage  `json:"controlPlane"`
	Path         string `json:"path"`
}

// ChangePropagation is one kind of change, made Repeats times: for each,
// the times at which the clients it changed had acknowledged it.
type ChangePropagation struct {
	Change  string         `json:"change"`
	Repeats []ChangeRepeat `json:"repeats"`
	// LatencyMs is the median over the repeats of each percentile (P100
	// in Max): the time until that share of the clients had acknowledged.
	LatencyMs PropagationLatency `json:"latencyMs"`
	// WorstMs is the longest any client took, over every repeat.
	WorstMs float64 `json:"worstMs"`
	// Missed counts acknowledgements that did not come within the
	// timeout, over every repeat.
	Missed int `json:"missed"`
}

// ChangeRepeat is one change: its version, how many clients it changed,
// how many acknowledged it in time, and the percentiles of their times.
type ChangeRepeat struct {
	Version   string             `json:"version"`
	Changed   int                `json:"changed"`
	Acked     int                `json:"acked"`
	LatencyMs PropagationLatency `json:"latencyMs"`
}

// PropagationLatency are percentiles of the clients' acknowledgement
// times, in milliseconds.
type PropagationLatency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Calibration is the harness floor: fortio to the application, no
// mesh, measured once before the trials.
type Calibration struct {
	Requested   float64 `json:"requestedQPS"`
	Achieved    float64 `json:"achievedQPS"`
	LatencyMs   Latency `json:"latencyMs"`
	COLatencyMs Latency `json:"coLatencyMs"`
	Errors      int64   `json:"errors"`
	Components  []Usage `json:"components"`
}

// Unavailable is a (mesh, mode) that was not run, with the reason.
type Unavailable struct {
	Mesh   string `json:"mesh"`
	Mode   string `json:"mode"`
	Reason string `json:"reason"`
}

// Build identifies the meshbench binary.
type Build struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"goVersion"`
}

// Host describes the machine.
type Host struct {
	Hostname string `json:"hostname"`
	Kernel   string `json:"kernel"`
	OS       string `json:"os"`
	Arch     string `json:"arch"`
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpuModel,omitempty"`
	MemoryMB int64  `json:"memoryMB"`
}

// Platform describes where the workloads ran.
type Platform struct {
	Name string `json:"name"`
	// Network is "netns" or "loopback"; NetworkReason says why it was chosen.
	Network       string            `json:"network"`
	NetworkReason string            `json:"networkReason"`
	Nodes         map[string]string `json:"nodes"`
	// ResourceSource says where CPU and memory figures come from.
	ResourceSource string `json:"resourceSource"`
	// Transparent says sidecars intercept traffic transparently (iptables)
	// rather than being dialed explicitly.
	Transparent bool `json:"transparent"`
	// Placement maps component classes to the CPUs they were pinned to.
	Placement map[string]string `json:"placement,omitempty"`
	// Cluster, Kubernetes and KubeNodes describe a Kubernetes platform:
	// the cluster, its server version and its nodes.
	Cluster    string     `json:"cluster,omitempty"`
	Kubernetes string     `json:"kubernetes,omitempty"`
	KubeNodes  []KubeNode `json:"kubeNodes,omitempty"`
	// Pods are, on Kubernetes, the pods that are the nodes (by node name):
	// what made each, and where it ran.
	Pods map[string]KubePod `json:"pods,omitempty"`
	// Services are, where the platform gives services addresses of
	// their own (Kubernetes Services), each service's address (ClusterIP)
	// by name.
	Services map[string]string `json:"services,omitempty"`
}

// KubePod is the pod of a node of a Kubernetes platform.
type KubePod struct {
	Pod string `json:"pod"`
	// Owner is what made it: Pod/<name> (the platform itself),
	// DaemonSet/<name> or Deployment/<name>.
	Owner string `json:"owner"`
	// Node is the Kubernetes node it ran on.
	Node string `json:"node"`
}

// KubeNode is a node of a Kubernetes platform.
type KubeNode struct {
	Name string `json:"name"`
	// Role is control-plane, or the meshbench role (loadgen, sut).
	Role     string `json:"role"`
	Kubelet  string `json:"kubelet"`
	CPUs     int64  `json:"cpus"`
	MemoryMB int64  `json:"memoryMB"`
}

// Trial is the outcome of one (mesh, mode) under load, once.
type Trial struct {
	Mesh        string    `json:"mesh"`
	Mode        string    `json:"mode"`
	Trial       int       `json:"trial"`
	Position    int       `json:"position"`
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
	Protocol    string    `json:"protocol"`
	Target      string    `json:"target"`
	Connections int       `json:"connections"`
	Duration    string    `json:"duration"`
	Requested   float64   `json:"requestedQPS"`
	Achieved    float64   `json:"achievedQPS"`
	Requests    int64     `json:"requests"`
	Errors      int64     `json:"errors"`
	// Codes count HTTP status codes (http, http2 load).
	Codes map[int]int64 `json:"codes,omitempty"`
	// Statuses count gRPC status names or TCP outcomes (grpc, tcp load);
	// StatusOK is success.
	Statuses  map[string]int64 `json:"statuses,omitempty"`
	LatencyMs Latency          `json:"latencyMs"`
	// COLatencyMs is the latency from each request's intended send time
	// (corrected for coordinated omission, as wrk2 measures).
	COLatencyMs Latency `json:"coLatencyMs"`
	Components  []Usage `json:"components"`
	DataPlane   string  `json:"dataPlane,omitempty"`
	// MTLS says the mesh's hops were mutual TLS.
	MTLS bool `json:"mtls"`
	// Path is the trial's directory relative to the results directory.
	Path string `json:"path,omitempty"`
	// Services are the topology's services' own counts: what each served
	// and how its calls to other services went.
	Services []ServiceCount `json:"services,omitempty"`
	// Probe is set on the trials of a max search.
	Probe *Probe `json:"probe,omitempty"`
	// ControlPlane is what the mesh's control plane reported when the
	// load ended, for meshes that have one.
	ControlPlane *ControlPlane `json:"controlPlane,omitempty"`
	// MeasureStart is when the measured window began (the load client's
	// clock); Events, what happened in it besides the load.
	MeasureStart time.Time     `json:"measureStart,omitzero"`
	Events       []WindowEvent `json:"events,omitempty"`
	// Faults are the faults put in force during the window, in order.
	Faults []Fault `json:"faults,omitempty"`
	// Series is the window second by second, from the load client.
	Series []Second `json:"series,omitempty"`
	// ProbeReadings are the active probes' readings (http, prometheus,
	// command), one a second each, in time order.
	ProbeReadings []ProbeReading `json:"probeReadings,omitempty"`
	// Verdict is the game day's judgement of the trial, when the
	// scenario has probes.
	Verdict *Verdict `json:"verdict,omitempty"`
	// Profiles are the proxies' Go profiles over the window (run
	// --profile), one per proxy that serves them.
	Profiles []Profile `json:"profiles,omitempty"`
}

// Profile is where one proxy's Go profiles over a trial's window are,
// relative to the trial's directory (pprof's format, gzipped protobuf).
type Profile struct {
	Proxy string `json:"proxy"`
	// CPU is a CPU profile of Seconds from the window's start.
	CPU     string `json:"cpu,omitempty"`
	Seconds int    `json:"seconds,omitempty"`
	// HeapStart and Heap are heap profiles taken just before and just
	// after it, each after a forced collection: their allocation counts
	// differ by the allocations in between; Heap's in-use figures are
	// the heap as the profile ended.
	HeapStart string `json:"heapStart,omitempty"`
	Heap      string `json:"heap,omitempty"`
	// Error is why a profile is missing.
	Error string `json:"error,omitempty"`
}

// ProfilesDir is where a trial's profiles go inside its directory.
const ProfilesDir = "profiles"

// Second is one second of a trial's measured window as the load client
// saw it: the requests sent in it, those that failed by code (HTTP status,
// "-1" for a connection error; the gRPC and TCP runners' own strings), and
// percentiles of their latency as sent (within 0.5%).
type Second struct {
	// Start is the second's start, in seconds from the window's start.
	Start    float64          `json:"start"`
	Requests int64            `json:"requests"`
	Errors   int64            `json:"errors"`
	Codes    map[string]int64 `json:"codes,omitempty"`
	P50Ms    float64          `json:"p50Ms"`
	P99Ms    float64          `json:"p99Ms"`
	MaxMs    float64          `json:"maxMs"`
}

// addrRE matches an IP address and port in an error message.
var addrRE = regexp.MustCompile(`\[?[0-9a-fA-F.:]*[0-9a-fA-F]\]?:[0-9]+`)

// StatusKey is a failure's key among a trial's statuses and a second's
// codes: fortio's TCP and gRPC errors name the connection's addresses,
// so that one key per kind of error, not per connection, is ADDR for them.
func StatusKey(status string) string { return addrRE.ReplaceAllString(status, "ADDR") }

// SeriesPath is where the load client writes its per-second series beside
// a fortio result file.
func SeriesPath(fortioPath string) string {
	return filepath.Join(filepath.Dir(fortioPath), SeriesFile)
}

// Verdict judges a trial of a game day: every probe over the seconds of
// its mode, Pass when each holds, the resilience score (Litmus's: the
// probes' success percents weighted), and each fault's times to detect
// and to recover.
type Verdict struct {
	Pass   bool          `json:"pass"`
	Score  float64       `json:"score"`
	Probes []ProbeResult `json:"probes"`
	Faults []FaultImpact `json:"faults,omitempty"`
}

// ProbeResult is a probe over a trial's seconds.
type ProbeResult struct {
	Name string `json:"name"`
	Mode string `json:"mode"`
	// Judged and Failed count the seconds with requests it judged and
	// those in which it did not hold; SuccessPct is the percent that held.
	Judged     int     `json:"judged"`
	Failed     int     `json:"failed"`
	SuccessPct float64 `json:"successPct"`
	Pass       bool    `json:"pass"`
	Reason     string  `json:"reason,omitempty"`
	// NotApplicable says the probe cannot judge this row (a query on
	// proxies' metrics where there are no proxies): Reason says why, and
	// it counts neither in the verdict nor in the score.
	NotApplicable bool `json:"notApplicable,omitempty"`
}

// ProbeReading is one reading of an active probe.
type ProbeReading struct {
	Probe string `json:"probe"`
	// At is when it was taken, in seconds from the window's start.
	At float64 `json:"at"`
	OK bool    `json:"ok"`
	// Value is what was read (a status code, a metric's value, a
	// command's output, shortened); Error why there was no reading.
	Value string `json:"value,omitempty"`
	Error string `json:"error,omitempty"`
}

// FaultImpact is when a fault's effect showed: DetectS is the seconds from
// its start to the start of the first second in which a probe failed (-1:
// none failed while it was in force or in the second after); RecoverS the
// seconds from its end to the start of the first second after it in which
// every probe held again (-1: none did).
type FaultImpact struct {
	Name     string  `json:"name"`
	DetectS  float64 `json:"detectS"`
	RecoverS float64 `json:"recoverS"`
}

// Fault is one fault action of a trial: what it was, on which workloads,
// when (seconds from the window's start) and what executed it.
type Fault struct {
	// Name is the scenario's fault (kind/name) and its step, if any.
	Name string `json:"name"`
	// Action is the kind and action ("NetworkChaos partition").
	Action  string   `json:"action"`
	Targets []string `json:"targets"`
	Peers   []string `json:"peers,omitempty"`
	// Start and End are when it was put in force and when it was
	// recovered (End is Start for a one-shot action).
	Start float64 `json:"start"`
	End   float64 `json:"end"`
	// Executor is what carried it out on the platform ("iptables",
	// "SIGSTOP/SIGCONT").
	Executor string `json:"executor"`
	// Note says what was not done as asked (a mode that picked no
	// workload, a pod with nothing to stop).
	Note string `json:"note,omitempty"`
	// Error is why it failed to be put in force or recovered, if it did.
	Error string `json:"error,omitempty"`
}

// WindowEvent is something that happened during the measured window,
// such as a policy change: At is seconds from the window's start.
type WindowEvent struct {
	At     float64 `json:"at"`
	Kind   string  `json:"kind"`
	Detail string  `json:"detail"`
}

// ControlPlane is a control plane's account of a trial: the configuration
// versions it served and what its clients acknowledged and rejected.
type ControlPlane struct {
	// Version is the version in force when the load ended.
	Version string `json:"version"`
	// Changes is how many configurations it put in force.
	Changes int `json:"changes"`
	// Nodes is how many clients it knew, and Current how many of them had
	// acknowledged, for every type, the version in force for it.
	Nodes   int `json:"nodes"`
	Current int `json:"current"`
	// NACKs are the configurations clients rejected, with their reasons.
	NACKs []NACK `json:"nacks,omitempty"`
}

// NACK is one configuration a client rejected.
type NACK struct {
	Node    string `json:"node"`
	Type    string `json:"type"`
	Version string `json:"version"`
	Message string `json:"message"`
}

// ServiceCount is what one service workload served during a trial
// (warm-up included) and the calls it made. Requests is -1 when the
// service did not report its counts.
type ServiceCount struct {
	Name       string `json:"name"`
	Requests   int64  `json:"requests"`
	Calls      int64  `json:"calls"`
	CallErrors int64  `json:"callErrors"`
	FirstError string `json:"firstError,omitempty"`
	// HTTP1 counts the requests that reached the service over HTTP/1.x.
	HTTP1 int64 `json:"http1,omitempty"`
	// Unreported counts the service's incarnations killed before they
	// reported their counts (a fault's kill): their requests are counted
	// up to their last once-a-second tick, their calls not at all.
	Unreported int `json:"unreported,omitempty"`
	// Ticks are the service's count so far, once a second: per-second
	// rates by difference, except where it was restarted (Unreported, or
	// a pod-kill's replacement), whose count starts again at 0.
	Ticks []Tick `json:"ticks,omitempty"`
	// Mesh is what the mesh's own telemetry reports of the service's
	// inbound traffic (SMI Traffic Metrics from its control plane), read
	// when the load ended: beside Requests, the application's own count.
	Mesh *TrafficMetrics `json:"mesh,omitempty"`
}

// TrafficMetrics is a service's inbound traffic as the mesh reports it
// (metrics.smi-spec.io: success_count, failure_count, response latency
// quantiles, and the counts by calling workload).
type TrafficMetrics struct {
	Success int64            `json:"success"`
	Failure int64            `json:"failure"`
	P50Ms   float64          `json:"p50Ms"`
	P90Ms   float64          `json:"p90Ms"`
	P99Ms   float64          `json:"p99Ms"`
	Window  string           `json:"window"`
	From    map[string]int64 `json:"from,omitempty"`
	// Error says why the mesh could not report them.
	Error string `json:"error,omitempty"`
}

// Tick is a service's request count at a moment.
type Tick struct {
	Time     time.Time `json:"time"`
	Requests int64     `json:"requests"`
}

// Probe is one step of a max search: whether the trial met the SLO, and
// why not.
type Probe struct {
	Index  int    `json:"index"`
	Pass   bool   `json:"pass"`
	Reason string `json:"reason,omitempty"`
}

// GetIndex is the probe's index, 0 for a trial that is not a probe.
func (p *Probe) GetIndex() int {
	if p == nil {
		return 0
	}
	return p.Index
}

// MaxResult is the outcome of one max search: the highest probed rate that
// met the SLO, and the lowest that did not.
type MaxResult struct {
	Mesh  string `json:"mesh"`
	Mode  string `json:"mode"`
	Trial int    `json:"trial"`
	// Rate is the highest rate that met the SLO (0: none did); Failed the
	// lowest that did not (0: none failed, up to the search's limit).
	Rate   float64 `json:"maxQPS"`
	Failed float64 `json:"failedQPS,omitempty"`
	// Achieved and LatencyMs are the passing probe's.
	Achieved  float64 `json:"achievedQPS,omitempty"`
	LatencyMs Latency `json:"latencyMs"`
	Probes    int     `json:"probes"`
	// Why the search stopped: "converged", "limit", "probes", "none".
	Stop string `json:"stop"`
}

// Key identifies the result's (mesh, mode).
func (m *MaxResult) Key() string { return m.Mesh + "/" + m.Mode }

// Key identifies a (mesh, mode) pair.
func (t *Trial) Key() string { return t.Mesh + "/" + t.Mode }

// RateKey identifies a (mesh, mode, rate).
func (t *Trial) RateKey() string { return fmt.Sprintf("%s/%s@%g", t.Mesh, t.Mode, t.Requested) }

// Dir is the trial's directory relative to the results directory.
func (t *Trial) Dir() string {
	if t.Path != "" {
		return t.Path
	}
	return TrialDir(t.Mesh, t.Mode, t.Trial)
}

// TrialDir is where a trial's files go inside a results directory.
func TrialDir(mesh, mode string, trial int) string {
	return filepath.Join("trials", fmt.Sprintf("%s-%s", mesh, mode), fmt.Sprintf("trial-%02d", trial))
}

// ProbeDir is where a max search's probe goes.
func ProbeDir(mesh, mode string, trial, probe int) string {
	return filepath.Join("trials", fmt.Sprintf("%s-%s-max", mesh, mode), fmt.Sprintf("trial-%02d", trial), fmt.Sprintf("probe-%02d", probe))
}

// ControlPlaneDir is where a control-plane benchmark's deployment of a
// (mesh, mode) keeps its configuration and logs; ControlPlaneStepDir,
// where each client count's files go.
func ControlPlaneDir(mesh, mode string) string {
	return filepath.Join("control-plane", fmt.Sprintf("%s-%s", mesh, mode))
}

// ControlPlaneStepDir: see ControlPlaneDir.
func ControlPlaneStepDir(mesh, mode string, clients int) string {
	return filepath.Join(ControlPlaneDir(mesh, mode), fmt.Sprintf("clients-%d", clients))
}

// SweepTrialDir is TrialDir for a run that sweeps several rates.
func SweepTrialDir(mesh, mode string, rate float64, trial int) string {
	return filepath.Join("trials", fmt.Sprintf("%s-%s-%grps", mesh, mode, rate), fmt.Sprintf("trial-%02d", trial))
}

// Latency holds a trial's latency distribution in milliseconds.
type Latency struct {
	Min  float64 `json:"min"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// Usage is one component's resource use during the measured window.
type Usage struct {
	Name  string `json:"name"`
	Class string `json:"class"`
	// Node is the meshbench node the component ran on; Host, on
	// Kubernetes, is the Kubernetes node.
	Node string `json:"node"`
	Host string `json:"host,omitempty"`
	// Pod, on Kubernetes, is the pod it ran in: its node's, or one made
	// for its deployment (where the sidecar is a container of the pod's
	// template).
	Pod string `json:"pod,omitempty"`
	// CPUMillicores is the mean CPU use over the window.
	CPUMillicores float64 `json:"cpuMillicores"`
	RSSMeanMB     float64 `json:"rssMeanMB"`
	RSSMaxMB      float64 `json:"rssMaxMB"`
	// WorkingSetMeanMB and WorkingSetMaxMB are the memory cgroup's usage
	// less its inactive file cache (what kubelet calls the working set),
	// when the component had a cgroup.
	WorkingSetMeanMB float64 `json:"workingSetMeanMB,omitempty"`
	WorkingSetMaxMB  float64 `json:"workingSetMaxMB,omitempty"`
	// Source says where the figures came from ("/proc").
	Source string `json:"source"`
	// Seconds is a proxy's (or control plane's) use second by second,
	// from the window's start: what a fault costs the data plane while it
	// is in force, drawn beside the load's series.
	Seconds []UsageSecond `json:"seconds,omitempty"`
}

// UsageSecond is a component's use in one second of the window.
type UsageSecond struct {
	// Start is the second's start, in seconds from the window's start.
	Start         float64 `json:"start"`
	CPUMillicores float64 `json:"cpuMillicores"`
	// MemoryMB is the working set where the component has a cgroup, else
	// the RSS: the second's largest reading.
	MemoryMB float64 `json:"memoryMB"`
}

// Component classes.
// StatusOK is the Statuses key of success: gRPC's OK, fortio's TCP "OK".
const StatusOK = "OK"

const (
	ClassLoadGen = "loadgen"
	ClassApp     = "app"
	ClassProxy   = "proxy"
	// ClassControlPlane is a mesh's control plane.
	ClassControlPlane = "control-plane"
)

// LatencyPath is where meshbench's own histogram of the latency as sent
// (finer than fortio's) goes beside a fortio result file.
func LatencyPath(fortioPath string) string {
	return filepath.Join(filepath.Dir(fortioPath), LatencyFile)
}

// COPath is where the corrected latency goes beside a fortio result file.
func COPath(fortioPath string) string {
	return filepath.Join(filepath.Dir(fortioPath), COFile)
}

// WriteJSON writes v as indented JSON to path atomically.
func WriteJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return WriteFile(path, append(data, '\n'))
}

// WriteFile writes data to path atomically: a reader sees the old file or
// the whole new one, never a part, and a crash leaves no partial file.
func WriteFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	return nil
}

// ReadManifest reads a results directory's manifest.
func ReadManifest(dir string) (*Manifest, error) {
	var m Manifest
	return &m, readJSON(filepath.Join(dir, ManifestFile), &m)
}

// ReadTrials reads every finished trial in a results directory, ordered by
// trial number and position. Trials that were in progress when a run died
// have no trial.json and are not returned.
func ReadTrials(dir string) ([]*Trial, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "trials", "*", "*", TrialFile))
	if err != nil {
		return nil, err
	}
	probes, err := filepath.Glob(filepath.Join(dir, "trials", "*", "*", "*", TrialFile))
	if err != nil {
		return nil, err
	}
	paths = append(paths, probes...)
	var out []*Trial
	for _, p := range paths {
		var t Trial
		if err := readJSON(p, &t); err != nil {
			return nil, err
		}
		out = append(out, &t)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Trial != out[j].Trial {
			return out[i].Trial < out[j].Trial
		}
		if out[i].Position != out[j].Position {
			return out[i].Position < out[j].Position
		}
		return out[i].Probe.GetIndex() < out[j].Probe.GetIndex()
	})
	return out, nil
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Conformance is a conformance suite's outcome for one (mesh, mode).
type Conformance struct {
	Suite string `json:"suite"`
	Mesh  string `json:"mesh"`
	Mode  string `json:"mode"`
	// Reason, when set, is why the mesh cannot be tested at all (every
	// spec then has capability NONE and no case ran).
	Reason string        `json:"reason,omitempty"`
	Specs  []SpecOutcome `json:"specs"`
	Start  time.Time     `json:"start"`
	Mutate string        `json:"mutate,omitempty"`
}

// Capabilities, as Meshery names them (PARTIAL is its HALF).
const (
	CapabilityFull    = "FULL"
	CapabilityPartial = "PARTIAL"
	CapabilityNone    = "NONE"
)

// SpecOutcome is one SMI spec's cases, and the capability they show:
// FULL when all pass, PARTIAL when at least half do, NONE otherwise.
type SpecOutcome struct {
	Spec       string        `json:"spec"`
	Version    string        `json:"version"`
	Capability string        `json:"capability"`
	Cases      []CaseOutcome `json:"cases"`
	Seconds    float64       `json:"seconds"`
}

// CaseOutcome is one step of a spec: what it asserts, and what was seen.
type CaseOutcome struct {
	Step      int     `json:"step"`
	Name      string  `json:"name"`
	Assertion string  `json:"assertion"`
	Passed    bool    `json:"passed"`
	Message   string  `json:"message"`
	Seconds   float64 `json:"seconds"`
}

// Passed counts the outcome's passing cases, and all of them.
func (c *Conformance) Passed() (passed, total int) {
	for _, s := range c.Specs {
		for _, cs := range s.Cases {
			total++
			if cs.Passed {
				passed++
			}
		}
	}
	return passed, total
}
