package smps

// Labels carry what SMP has no field for. Every label meshbench writes is
// named here, and only here, so that readers have one list to consult.
const (
	LabelRunID      = "meshbench.dev/run-id"
	LabelScenario   = "meshbench.dev/scenario"
	LabelMesh       = "meshbench.dev/mesh"
	LabelMode       = "meshbench.dev/mode"
	LabelTrial      = "meshbench.dev/trial"
	LabelPosition   = "meshbench.dev/position"
	LabelNetwork    = "meshbench.dev/network"
	LabelResolution = "meshbench.dev/histogram-resolution"
	LabelWarmup     = "meshbench.dev/warmup"
	// The load's protocol (http, http2, grpc, tcp): SMP's client protocol
	// has no HTTP/2.
	LabelProtocol = "meshbench.dev/load-protocol"
	// The entry service's (the one the client calls) service time and
	// response size, and the topology's call graph ("client>api").
	LabelServiceTime = "meshbench.dev/server-service-time"
	LabelPayloadSize = "meshbench.dev/server-payload-bytes"
	LabelTopology    = "meshbench.dev/topology"
	// A max search's probe number and whether it met the SLO.
	LabelProbe     = "meshbench.dev/max-probe"
	LabelSLOMet    = "meshbench.dev/slo-met"
	LabelDataPlane = "meshbench.dev/data-plane"
	// Latency percentiles beyond SMP's p50/p90/p99, in milliseconds.
	LabelP999Ms = "meshbench.dev/latency-p999-ms"
	// Latency from each request's intended send time (coordinated omission
	// corrected), p50 and p99, in milliseconds.
	LabelCOP50Ms = "meshbench.dev/co-latency-p50-ms"
	LabelCOP99Ms = "meshbench.dev/co-latency-p99-ms"
	// Request counts of the measured window.
	LabelRequests = "meshbench.dev/requests"
	LabelErrors   = "meshbench.dev/errors"
	// The requested rate (SMP has it only in the config's client).
	LabelRequested = "meshbench.dev/requested-qps"
	// Resource use during the measured window, per component class: the
	// class name is appended, e.g. "meshbench.dev/cpu-mcores.proxy".
	LabelCPUPrefix = "meshbench.dev/cpu-mcores."
	LabelRSSPrefix = "meshbench.dev/rss-max-mb."
	LabelUsageSrc  = "meshbench.dev/resource-source"
	// Each component's class (loadgen, app, proxy), by component name.
	LabelClassPrefix = "meshbench.dev/component-class."
	// A control-plane benchmark step's ServiceMeshConfig: its client
	// counts, and each change's percentiles (LabelPropagationPrefix +
	// "<change>-p50-ms"...).
	LabelClients           = "meshbench.dev/xds-clients"
	LabelSimulated         = "meshbench.dev/xds-clients-simulated"
	LabelReplicaOf         = "meshbench.dev/xds-clients-replica-of"
	LabelPropagationPrefix = "meshbench.dev/propagation-"

	// A game day's verdict (a scenario with probes) on a trial: pass or
	// fail, the resilience score (percent), each probe's success percent
	// and each fault's seconds to detect and to recover (-1: never), by
	// name appended ("meshbench.dev/fault-detect-s.NetworkChaos.cut").
	LabelGameDayPass        = "meshbench.dev/gameday-pass"
	LabelResilienceScore    = "meshbench.dev/resilience-score"
	LabelProbeSuccessPrefix = "meshbench.dev/probe-success-pct."
	LabelFaultDetectPrefix  = "meshbench.dev/fault-detect-s."
	LabelFaultRecoverPrefix = "meshbench.dev/fault-recover-s."

	// The environment's platform, kernel and CPU.
	LabelPlatform = "meshbench.dev/platform"
	LabelKernel   = "meshbench.dev/kernel"
	LabelCPUModel = "meshbench.dev/cpu-model"
	// A Kubernetes platform's cluster and server version.
	LabelCluster    = "meshbench.dev/cluster"
	LabelKubernetes = "meshbench.dev/kubernetes-version"
)
