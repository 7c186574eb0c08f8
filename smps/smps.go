// Package smps maps meshbench results to Service Mesh Performance (SMP)
// documents, using the upstream types of
// github.com/layer5io/service-mesh-performance/spec, and reads them back
// strictly. Figures SMP has no field for go in the labels named in
// labels.go, never in invented fields.
package smps

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	smp "github.com/layer5io/service-mesh-performance/spec"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/scenarios"
)

// Version is the SMP spec version meshbench writes.
const Version = "v0.6.1"

// LoadGenerator names the load generator in PerformanceTestConfig.
const LoadGenerator = "fortio"

// Message is an SMP document.
type Message = proto.Message

// ConfigID is the id of the PerformanceTestConfig of a trial.
func ConfigID(runID string, t *results.Trial) string {
	id := fmt.Sprintf("%s-%s-%s-%grps-%d", runID, t.Mesh, t.Mode, t.Requested, t.Trial)
	if t.Probe != nil {
		id += fmt.Sprintf("-probe-%d", t.Probe.Index)
	}
	return id
}

// FromTrial builds the PerformanceTestConfig and PerformanceTestResult of
// one trial.
func FromTrial(m *results.Manifest, t *results.Trial) (*smp.PerformanceTestConfig, *smp.PerformanceTestResult) {
	id := ConfigID(m.RunID, t)
	labels := map[string]string{
		LabelRunID:      m.RunID,
		LabelMesh:       t.Mesh,
		LabelMode:       t.Mode,
		LabelTrial:      strconv.Itoa(t.Trial),
		LabelPosition:   strconv.Itoa(t.Position),
		LabelNetwork:    m.Platform.Network,
		LabelResolution: m.HistogramResolution,
	}
	if t.Protocol != "" {
		labels[LabelProtocol] = t.Protocol
	}
	name := ""
	if s := m.Scenario; s != nil {
		name = s.Name
		labels[LabelScenario] = s.Name
		labels[LabelWarmup] = s.Load.Warmup.String()
		entry := s.Topology.ServiceList()[0]
		labels[LabelServiceTime] = entry.ServiceTime.String()
		labels[LabelPayloadSize] = strconv.FormatInt(int64(entry.PayloadSize), 10)
		labels[LabelTopology] = s.Topology.Shape()
	}
	if t.DataPlane != "" {
		labels[LabelDataPlane] = t.DataPlane
	}
	if t.Probe != nil {
		labels[LabelProbe] = strconv.Itoa(t.Probe.Index)
		labels[LabelSLOMet] = strconv.FormatBool(t.Probe.Pass)
	}
	cfg := &smp.PerformanceTestConfig{
		SmpVersion: Version,
		Id:         id,
		Name:       fmt.Sprintf("%s %s/%s trial %d", name, t.Mesh, t.Mode, t.Trial),
		Labels:     labels,
		Duration:   t.Duration,
		Clients: []*smp.PerformanceTestConfig_Client{{
			Internal:      true,
			LoadGenerator: LoadGenerator,
			Protocol:      clientProtocol(t.Protocol),
			Connections:   int32(t.Connections),
			Rps:           int64(t.Requested),
			EndpointUrls:  []string{t.Target},
		}},
	}
	resLabels := map[string]string{
		LabelMesh:      t.Mesh,
		LabelMode:      t.Mode,
		LabelTrial:     strconv.Itoa(t.Trial),
		LabelP999Ms:    fmtFloat(t.LatencyMs.P999),
		LabelCOP50Ms:   fmtFloat(t.COLatencyMs.P50),
		LabelCOP99Ms:   fmtFloat(t.COLatencyMs.P99),
		LabelRequests:  strconv.FormatInt(t.Requests, 10),
		LabelErrors:    strconv.FormatInt(t.Errors, 10),
		LabelRequested: strconv.FormatFloat(t.Requested, 'f', -1, 64),
	}
	if t.Protocol != "" {
		resLabels[LabelProtocol] = t.Protocol
	}
	for _, u := range t.Components {
		resLabels[LabelCPUPrefix+u.Name] = fmtFloat(u.CPUMillicores)
		resLabels[LabelRSSPrefix+u.Name] = fmtFloat(u.RSSMaxMB)
		resLabels[LabelClassPrefix+u.Name] = u.Class
		resLabels[LabelUsageSrc] = u.Source
	}
	if t.Probe != nil {
		resLabels[LabelProbe] = strconv.Itoa(t.Probe.Index)
		resLabels[LabelSLOMet] = strconv.FormatBool(t.Probe.Pass)
	}
	if v := t.Verdict; v != nil {
		resLabels[LabelGameDayPass] = strconv.FormatBool(v.Pass)
		resLabels[LabelResilienceScore] = fmtFloat(v.Score)
		for _, p := range v.Probes {
			if !p.NotApplicable {
				resLabels[LabelProbeSuccessPrefix+labelName(p.Name)] = fmtFloat(p.SuccessPct)
			}
		}
		for _, f := range v.Faults {
			resLabels[LabelFaultDetectPrefix+labelName(f.Name)] = fmtFloat(f.DetectS)
			resLabels[LabelFaultRecoverPrefix+labelName(f.Name)] = fmtFloat(f.RecoverS)
		}
	}
	res := &smp.PerformanceTestResult{
		SmpVersion: Version,
		Id:         id + "-result",
		Labels:     resLabels,
		StartTime:  timestamppb.New(t.Start),
		EndTime:    timestamppb.New(t.End),
		LatenciesMs: &smp.PerformanceTestResult_Latency{
			Min: t.LatencyMs.Min, Average: t.LatencyMs.Mean, P50: t.LatencyMs.P50,
			P90: t.LatencyMs.P90, P99: t.LatencyMs.P99, Max: t.LatencyMs.Max,
		},
		ActualQps:    t.Achieved,
		DetailsUri:   results.FortioFile,
		TestId:       id,
		MeshConfigId: MeshConfigID(m.RunID, t),
		EnvId:        EnvironmentID(m.RunID),
	}
	return cfg, res
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) }

// labelName is a probe's or fault's name as a label key's suffix: a fault's
// kind/name with a dot for the slash, anything but letters, digits, '.',
// '-' and '_' as '_'.
func labelName(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '/':
			return '.'
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, name)
}

// Marshal renders an SMP document as indented protobuf JSON.
func Marshal(m Message) ([]byte, error) {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ReadConfig reads a PerformanceTestConfig strictly: unknown fields fail.
func ReadConfig(path string) (*smp.PerformanceTestConfig, error) {
	var m smp.PerformanceTestConfig
	return &m, read(path, &m)
}

// ReadResult reads a PerformanceTestResult strictly: unknown fields fail.
func ReadResult(path string) (*smp.PerformanceTestResult, error) {
	var m smp.PerformanceTestResult
	return &m, read(path, &m)
}

func read(path string, m Message) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(data, m); err != nil {
		// protojson's text varies (it spaces with U+00A0 at random, so
		// that nobody matches it): say what is wrong first.
		return fmt.Errorf("%s: not an SMPS %s document: %w", path, m.ProtoReflect().Descriptor().Name(), err)
	}
	return nil
}

// ReadMeshConfig reads a ServiceMeshConfig strictly.
func ReadMeshConfig(path string) (*smp.ServiceMeshConfig, error) {
	var m smp.ServiceMeshConfig
	return &m, read(path, &m)
}

// ReadEnvironment reads an EnvironmentConfig strictly.
func ReadEnvironment(path string) (*smp.EnvironmentConfig, error) {
	var m smp.EnvironmentConfig
	return &m, read(path, &m)
}

// TrialFromResult rebuilds the figures of a trial from its
// PerformanceTestResult and the labels meshbench wrote, so that SMPS
// documents (published, or from another tool that sets the same labels)
// can be compared like results directories.
func TrialFromResult(res *smp.PerformanceTestResult) (*results.Trial, error) {
	l := res.GetLabels()
	num := func(key string) float64 {
		v, _ := strconv.ParseFloat(l[key], 64)
		return v
	}
	t := &results.Trial{Mesh: l[LabelMesh], Mode: l[LabelMode], Achieved: res.GetActualQps(), Requested: num(LabelRequested),
		Requests: int64(num(LabelRequests)), Errors: int64(num(LabelErrors))}
	if t.Mesh == "" || t.Mode == "" {
		return nil, fmt.Errorf("result %q has no %s and %s labels: not a meshbench result", res.GetId(), LabelMesh, LabelMode)
	}
	t.Trial, _ = strconv.Atoi(l[LabelTrial])
	t.Protocol = l[LabelProtocol]
	if t.Requested == 0 {
		t.Requested = math.Round(t.Achieved)
	}
	lat := res.GetLatenciesMs()
	t.LatencyMs = results.Latency{Min: lat.GetMin(), Mean: lat.GetAverage(), P50: lat.GetP50(), P90: lat.GetP90(), P99: lat.GetP99(), P999: num(LabelP999Ms), Max: lat.GetMax()}
	t.COLatencyMs = results.Latency{P50: num(LabelCOP50Ms), P99: num(LabelCOP99Ms)}
	t.Start, t.End = res.GetStartTime().AsTime(), res.GetEndTime().AsTime()
	for key := range l {
		name, ok := strings.CutPrefix(key, LabelCPUPrefix)
		if !ok {
			continue
		}
		t.Components = append(t.Components, results.Usage{Name: name, Class: l[LabelClassPrefix+name],
			CPUMillicores: num(key), RSSMaxMB: num(LabelRSSPrefix + name), Source: l[LabelUsageSrc]})
	}
	sort.Slice(t.Components, func(i, j int) bool { return t.Components[i].Name < t.Components[j].Name })
	if p, ok := l[LabelProbe]; ok {
		idx, _ := strconv.Atoi(p)
		t.Probe = &results.Probe{Index: idx, Pass: l[LabelSLOMet] == "true"}
	}
	return t, nil
}

// clientProtocol is the SMP client protocol of a load protocol: SMP has
// HTTP, TCP, UDP and gRPC; HTTP/2 load is HTTP (the trial's protocol
// label says which).
func clientProtocol(p string) smp.PerformanceTestConfig_Client_Protocol {
	switch p {
	case scenarios.ProtocolGRPC:
		return smp.PerformanceTestConfig_Client_PROTOCOL_GRPC
	case scenarios.ProtocolTCP:
		return smp.PerformanceTestConfig_Client_PROTOCOL_TCP
	}
	return smp.PerformanceTestConfig_Client_PROTOCOL_HTTP
}
