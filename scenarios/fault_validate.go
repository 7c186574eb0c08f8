package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	pathpkg "path"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	gw "github.com/chaos-mesh/chaos-mesh/api/genericwebhook"
	chaosv1alpha1 "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"
	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"
)

func init() {
	// Chaos Mesh's webhooks log through controller-runtime, which warns
	// on stderr, 30 s into a run, that no logger was set.
	crlog.SetLogger(logr.Discard())
}

// FaultLabel is the label faults select workloads by: each workload (the
// client, every service) carries FaultLabel=<its name>, as a Deployment's
// pods carry app=<name>.
const FaultLabel = "app"

// The containers of a workload a PodChaos container-kill may name.
const (
	// ContainerApp is the workload's application.
	ContainerApp = "app"
	// ContainerProxy is its sidecar proxy, in modes that have one.
	ContainerProxy = "proxy"
)

// Actions meshbench executes, per kind.
var (
	podChaosActions     = []string{string(chaosv1alpha1.PodKillAction), string(chaosv1alpha1.PodFailureAction), string(chaosv1alpha1.ContainerKillAction)}
	networkChaosActions = []string{string(chaosv1alpha1.DelayAction), string(chaosv1alpha1.LossAction), string(chaosv1alpha1.DuplicateAction),
		string(chaosv1alpha1.CorruptAction), string(chaosv1alpha1.PartitionAction), string(chaosv1alpha1.BandwidthAction)}
	directions    = []string{string(chaosv1alpha1.To), string(chaosv1alpha1.From), string(chaosv1alpha1.Both)}
	selectorModes = []string{string(chaosv1alpha1.OneMode), string(chaosv1alpha1.AllMode), string(chaosv1alpha1.FixedMode),
		string(chaosv1alpha1.FixedPercentMode), string(chaosv1alpha1.RandomMaxPercentMode)}
	// embeddable are the kinds a Schedule or a Workflow may hold.
	embeddable = []string{chaosv1alpha1.KindPodChaos, chaosv1alpha1.KindNetworkChaos, chaosv1alpha1.KindHTTPChaos, chaosv1alpha1.KindStressChaos}
)

// faultNameRE is a Kubernetes object name (a DNS-1123 subdomain, short).
var faultNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

// faultCheck validates one fault against the scenario.
type faultCheck struct {
	add      addFunc
	pods     []Pod
	window   time.Duration
	protocol string // the load's
}

// validateFaults checks each fault: Chaos Mesh's own validation (its
// admission webhook's), then what meshbench executes: kinds, actions,
// selectors that match the topology's workloads, and times within the
// measured window.
func (s *Scenario) validateFaults(add addFunc) {
	if len(s.Faults) == 0 {
		return
	}
	if s.ControlPlane != nil || s.Load.Max != nil {
		add("faults", "faults need a measured window of fixed load (load.qps or load.rates), not %s", map[bool]string{true: "a control-plane benchmark", false: "a max search"}[s.ControlPlane != nil])
		return
	}
	// Chaos Mesh validates some fields twice (a selector inline in two
	// places): each problem is said once.
	said := map[string]bool{}
	once := func(path, format string, args ...any) {
		if k := path + "\x00" + fmt.Sprintf(format, args...); !said[k] {
			said[k] = true
			add(path, format, args...)
		}
	}
	c := &faultCheck{add: once, window: s.Load.Duration.D(), pods: s.Topology.Pods(), protocol: s.Load.Protocol}
	seen := map[string]int{}
	for i, f := range s.Faults {
		path := fmt.Sprintf("faults[%d]", i)
		if f.Object == nil {
			continue // the decoder reported why
		}
		m := objectMeta(f.Object)
		if !faultNameRE.MatchString(m.Name) {
			add(join(path, "metadata.name"), "%q is not a valid object name (lowercase letters, digits, '-' and '.', at most 63)", m.Name)
		}
		if j, dup := seen[f.Key()]; dup {
			add(join(path, "metadata.name"), "a second %s named %q (faults[%d] is the first)", f.Kind(), m.Name, j)
		}
		seen[f.Key()] = i
		if m.Namespace != "" && m.Namespace != PolicyNamespace {
			add(join(path, "metadata.namespace"), "the workloads are in namespace %q, not %q", PolicyNamespace, m.Namespace)
		}
		inside := f.At >= 0 && f.At.D() < c.window
		if !inside {
			add(join(path, "at"), "%s is outside the measured window (load.duration %s)", f.At, c.window)
		}
		c.webhook(path, f.Object)
		extent := c.object(path, f.Object)
		if inside && extent != toEnd && f.At.D()+extent > c.window {
			add(join(path, "spec"), "the fault lasts %s from at %s, past the end of the measured window (load.duration %s)", extent, f.At, c.window)
		}
	}
}

// webhook runs Chaos Mesh's own defaulting and validation on a copy,
// each error at its field.
func (c *faultCheck) webhook(path string, obj any) {
	// Its code assumes what the CRD's schema checks first (a Schedule's
	// type has its spec): what it cannot take, meshbench's checks name.
	defer func() {
		if r := recover(); r != nil {
			c.add(join(path, "spec"), "Chaos Mesh's validation cannot take this object (%v)", r)
		}
	}()
	cp := obj.(runtime.Object).DeepCopyObject()
	gw.Default(cp)
	for _, e := range gw.Validate(cp) {
		c.add(join(path, jsonPath(reflect.TypeOf(obj), e.Field)), "%s", e.ErrorBody())
	}
	switch o := cp.(type) {
	case *chaosv1alpha1.Schedule:
		if _, err := EmbeddedChaos(&o.Spec.EmbedChaos, string(o.Spec.Type)); err != nil || !slices.Contains(embeddable, string(o.Spec.Type)) {
			return // meshbench's checks say why
		}
		for _, e := range o.Spec.Validate(&o.Spec) {
			c.add(join(path, jsonPath(reflect.TypeOf(obj), e.Field)), "%s", e.ErrorBody())
		}
	case *chaosv1alpha1.Workflow:
		// Its code takes a chaos template's spec for granted: without
		// one, meshbench's checks say why.
		for _, t := range o.Spec.Templates {
			if slices.Contains(embeddable, string(t.Type)) {
				if t.EmbedChaos == nil {
					return
				}
				if _, err := EmbeddedChaos(t.EmbedChaos, string(t.Type)); err != nil {
					return
				}
			}
		}
		// Its validation reports one aggregate error.
		if _, err := o.ValidateCreate(context.Background(), o); err != nil {
			c.add(join(path, "spec"), "%v", err)
		}
	}
}

// object checks a fault object and returns how long it lasts (to the end
// of the window when it has no duration, or when it repeats).
func (c *faultCheck) object(path string, obj any) time.Duration {
	spec := join(path, "spec")
	switch o := obj.(type) {
	case *chaosv1alpha1.Schedule:
		return c.schedule(spec, &o.Spec)
	case *chaosv1alpha1.Workflow:
		return c.workflow(spec, &o.Spec)
	}
	return c.chaos(spec, obj.(chaosv1alpha1.GenericChaos))
}

// chaos checks one chaos object's spec (at path) and returns how long it
// lasts.
func (c *faultCheck) chaos(path string, obj chaosv1alpha1.GenericChaos) time.Duration {
	switch o := obj.(type) {
	case *chaosv1alpha1.PodChaos:
		sp := &o.Spec
		c.oneOf(join(path, "action"), string(sp.Action), podChaosActions)
		c.selector(path, &sp.PodSelector)
		if sp.Action == chaosv1alpha1.ContainerKillAction {
			for i, n := range sp.ContainerNames {
				c.oneOf(fmt.Sprintf("%s.containerNames[%d]", path, i), n, []string{ContainerApp, ContainerProxy})
			}
		}
	case *chaosv1alpha1.NetworkChaos:
		sp := &o.Spec
		c.oneOf(join(path, "action"), string(sp.Action), networkChaosActions)
		c.selector(path, &sp.PodSelector)
		if sp.Direction != "" {
			c.oneOf(join(path, "direction"), string(sp.Direction), directions)
		}
		if sp.Target != nil {
			c.selector(join(path, "target"), sp.Target)
		}
		params := map[chaosv1alpha1.NetworkChaosAction]bool{
			chaosv1alpha1.DelayAction: sp.Delay != nil, chaosv1alpha1.LossAction: sp.Loss != nil,
			chaosv1alpha1.DuplicateAction: sp.Duplicate != nil, chaosv1alpha1.CorruptAction: sp.Corrupt != nil,
			chaosv1alpha1.BandwidthAction: sp.Bandwidth != nil,
		}
		if set, needs := params[sp.Action]; needs && !set {
			c.add(join(path, string(sp.Action)), "missing: action %s takes its parameters from spec.%s", sp.Action, sp.Action)
		}
		for action, set := range params {
			if set && action != sp.Action {
				c.add(join(path, string(action)), "set, but the action is %s (one action per object)", sp.Action)
			}
		}
		if b := sp.Bandwidth; b != nil && sp.Action == chaosv1alpha1.BandwidthAction {
			if b.Limit == 0 {
				c.add(join(path, "bandwidth.limit"), "missing: the bytes that may queue for tokens (at least 1)")
			}
			if b.Buffer == 0 {
				c.add(join(path, "bandwidth.buffer"), "missing: the burst in bytes (at least 1)")
			}
			if b.Peakrate != nil && *b.Peakrate > 0 && (b.Minburst == nil || *b.Minburst == 0) {
				c.add(join(path, "bandwidth.peakrate"), "a peak rate needs minburst, the size of its bucket (the interface's MTU for exact shaping)")
			}
		}
		if sp.PartitionBehavior != "" {
			c.oneOf(join(path, "partitionBehavior"), string(sp.PartitionBehavior), []string{string(chaosv1alpha1.DropPartitionBehavior), string(chaosv1alpha1.RejectPartitionBehavior)})
		}
		c.unsupported(path, map[string]bool{"externalTargets": len(sp.ExternalTargets) > 0, "device": sp.Device != "",
			"targetDevice": sp.TargetDevice != "", "rate": sp.Rate != nil, "remoteCluster": sp.RemoteCluster != ""},
			"meshbench faults act on the topology's workloads")
	case *chaosv1alpha1.HTTPChaos:
		sp := &o.Spec
		c.selector(path, &sp.PodSelector)
		// target and port: Chaos Mesh's validation checks them.
		if sp.Abort == nil && sp.Delay == nil && sp.Replace == nil && sp.Patch == nil {
			c.add(path, "no action: set abort, delay, replace or patch")
		}
		c.unsupported(path, map[string]bool{"tls": sp.TLS != nil, "remoteCluster": sp.RemoteCluster != ""}, "meshbench faults act on the topology's plain-text traffic")
		if c.protocol != "" && c.protocol != ProtocolHTTP {
			c.add(path, "HTTPChaos acts on HTTP/1.1 traffic (load.protocol %s), as Chaos Mesh's does; this load is %s", ProtocolHTTP, c.protocol)
		}
		if sp.Path != nil {
			if _, err := pathpkg.Match(*sp.Path, "/"); err != nil {
				c.add(join(path, "path"), "%q is not a path pattern: %v", *sp.Path, err)
			}
		}
		if p := sp.Patch; p != nil && p.Body != nil {
			if p.Body.Type != "JSON" {
				c.add(join(path, "patch.body.type"), "%q: Chaos Mesh patches bodies as JSON (a merge patch): type JSON", p.Body.Type)
			} else if !json.Valid([]byte(p.Body.Value)) {
				c.add(join(path, "patch.body.value"), "not JSON: %q", p.Body.Value)
			}
		}
	case *chaosv1alpha1.StressChaos:
		sp := &o.Spec
		c.selector(path, &sp.PodSelector)
		if sp.Stressors == nil || sp.Stressors.CPUStressor == nil && sp.Stressors.MemoryStressor == nil {
			c.add(join(path, "stressors"), "missing: set stressors.cpu or stressors.memory")
		} else if cpu := sp.Stressors.CPUStressor; cpu != nil && cpu.Load != nil && (*cpu.Load < 0 || *cpu.Load > 100) {
			c.add(join(path, "stressors.cpu.load"), "%d is not a percentage (0-100; 0 is no load)", *cpu.Load)
		}
		c.unsupported(path, map[string]bool{"stressngStressors": sp.StressngStressors != "", "remoteCluster": sp.RemoteCluster != ""},
			"meshbench runs its own stressors (stressors.cpu, stressors.memory)")
	default:
		c.add(path, "a %T cannot be a fault", obj)
		return 0
	}
	d, err := ChaosDuration(obj)
	if err != nil {
		return 0 // Chaos Mesh's validation reported it
	}
	return d // toEnd when it sets none
}

// toEnd is an extent that lasts to the window's end (no duration, or a
// Schedule's repetition).
const toEnd time.Duration = -1

// schedule checks a Schedule: its cron schedule, and a chaos kind
// meshbench executes, repeated for the rest of the window.
func (c *faultCheck) schedule(path string, sp *chaosv1alpha1.ScheduleSpec) time.Duration {
	if _, err := chaosv1alpha1.StandardCronParser.Parse(sp.Schedule); err != nil {
		c.add(join(path, "schedule"), "%q: %v", sp.Schedule, err)
	}
	if sp.ConcurrencyPolicy != "" {
		c.oneOf(join(path, "concurrencyPolicy"), string(sp.ConcurrencyPolicy), []string{string(chaosv1alpha1.ForbidConcurrent), string(chaosv1alpha1.AllowConcurrent)})
	}
	if c.oneOf(join(path, "type"), string(sp.Type), embeddable) {
		c.embedded(path, string(sp.Type), &sp.EmbedChaos)
	}
	return toEnd
}

// workflow checks a Workflow's templates and returns how long its entry
// lasts (toEnd: to the window's end).
func (c *faultCheck) workflow(path string, sp *chaosv1alpha1.WorkflowSpec) time.Duration {
	byName := map[string]int{}
	for i, t := range sp.Templates {
		byName[t.Name] = i
	}
	kinds := append([]string{string(chaosv1alpha1.TypeSerial), string(chaosv1alpha1.TypeParallel), string(chaosv1alpha1.TypeSuspend)}, embeddable...)
	// Each template is checked once; its extent is remembered (a
	// template may be the child of several).
	extents := map[int]time.Duration{}
	visiting := map[int]bool{}
	var extent func(name, from string) time.Duration
	extent = func(name, from string) time.Duration {
		i, ok := byName[name]
		if !ok {
			return 0 // Chaos Mesh's validation reported it
		}
		if d, done := extents[i]; done {
			return d
		}
		if visiting[i] {
			c.add(from, "template %q is its own descendant (a cycle)", name)
			return 0
		}
		visiting[i] = true
		defer delete(visiting, i)
		t := sp.Templates[i]
		tp := fmt.Sprintf("%s.templates[%d]", path, i)
		var deadline time.Duration
		if t.Deadline != nil {
			d, err := time.ParseDuration(*t.Deadline)
			if err != nil || d <= 0 {
				c.add(join(tp, "deadline"), "%q is not a positive duration", *t.Deadline)
			}
			deadline = max(d, 0)
		}
		var d time.Duration
		switch {
		case t.Type == chaosv1alpha1.TypeSerial || t.Type == chaosv1alpha1.TypeParallel:
			for j, ch := range t.Children {
				e := extent(ch, fmt.Sprintf("%s.children[%d]", tp, j))
				switch {
				case d == toEnd || e == toEnd:
					d = toEnd
				case t.Type == chaosv1alpha1.TypeSerial:
					d += e
				default:
					d = max(d, e)
				}
			}
			if deadline > 0 && (d == toEnd || d > deadline) {
				d = deadline
			}
		case t.Type == chaosv1alpha1.TypeSuspend:
			d = deadline
		case !c.oneOf(join(tp, "templateType"), string(t.Type), kinds):
		case t.EmbedChaos == nil:
			c.add(tp, "a %s template needs its %s", t.Type, lowerFirst(string(t.Type)))
		default:
			d = toEnd
			if deadline > 0 {
				d = deadline
			}
			c.embedded(tp, string(t.Type), t.EmbedChaos)
		}
		extents[i] = d
		return d
	}
	return extent(sp.Entry, join(path, "entry"))
}

// embedded checks the chaos spec of kind a Schedule or a Workflow
// template holds (at path.<kind in lower camel case>).
func (c *faultCheck) embedded(path, kind string, ec *chaosv1alpha1.EmbedChaos) {
	obj, err := EmbeddedChaos(ec, kind)
	if err != nil {
		c.add(join(path, lowerFirst(kind)), "%v", err)
		return
	}
	c.chaos(join(path, lowerFirst(kind)), obj)
}

// EmbeddedChaos is the chaos object of kind that a Schedule or a Workflow
// template embeds (an error when it holds none of that kind).
func EmbeddedChaos(ec *chaosv1alpha1.EmbedChaos, kind string) (chaosv1alpha1.GenericChaos, error) {
	f := reflect.ValueOf(ec).Elem().FieldByName(kind)
	if !f.IsValid() || f.Kind() != reflect.Pointer || f.IsNil() {
		return nil, fmt.Errorf("missing: a %s needs its spec under %s", kind, lowerFirst(kind))
	}
	return ec.SpawnNewObject(chaosv1alpha1.TemplateType(kind))
}

// selector checks a pod selector (the fields inline at path): a mode, and
// labels that pick workloads of the topology by FaultLabel.
func (c *faultCheck) selector(path string, ps *chaosv1alpha1.PodSelector) {
	c.oneOf(join(path, "mode"), string(ps.Mode), selectorModes)
	sel := &ps.Selector
	c.unsupported(join(path, "selector"), map[string]bool{"fieldSelectors": len(sel.FieldSelectors) > 0,
		"annotationSelectors": len(sel.AnnotationSelectors) > 0, "nodes": len(sel.Nodes) > 0, "pods": len(sel.Pods) > 0,
		"nodeSelectors": len(sel.NodeSelectors) > 0, "podPhaseSelectors": len(sel.PodPhaseSelectors) > 0},
		fmt.Sprintf("select workloads by labelSelectors or expressionSelectors on %q (a workload's name)", FaultLabel))
	for i, ns := range sel.Namespaces {
		if ns != "" && ns != PolicyNamespace {
			c.add(fmt.Sprintf("%s.selector.namespaces[%d]", path, i), "the workloads are in namespace %q, not %q", PolicyNamespace, ns)
		}
	}
	for k := range sel.LabelSelectors {
		if k != FaultLabel {
			c.add(join(path, "selector.labelSelectors."+k), "workloads carry one label, %s=<name> (the client's or a service's)", FaultLabel)
		}
	}
	for i, r := range sel.ExpressionSelectors {
		if r.Key != FaultLabel {
			c.add(fmt.Sprintf("%s.selector.expressionSelectors[%d].key", path, i), "workloads carry one label, %s=<name>", FaultLabel)
		}
	}
	if len(SelectWorkloads(ps, c.pods)) == 0 {
		var apps []string
		for _, p := range c.pods {
			if !slices.Contains(apps, p.App) {
				apps = append(apps, p.App)
			}
		}
		c.add(join(path, "selector"), "selects no workload (the workloads: %s)", strings.Join(apps, ", "))
	}
}

// SelectWorkloads returns the pods (by name) a selector's labels match,
// in the given order, before its mode picks among them.
func SelectWorkloads(ps *chaosv1alpha1.PodSelector, pods []Pod) []string {
	ls := &metav1.LabelSelector{MatchLabels: ps.Selector.LabelSelectors, MatchExpressions: ps.Selector.ExpressionSelectors}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return nil
	}
	var out []string
	for _, p := range pods {
		if sel.Matches(workloadLabels{p.App}) {
			out = append(out, p.Name)
		}
	}
	return out
}

// workloadLabels are a pod's labels (labels.Labels): its app.
type workloadLabels struct{ app string }

func (l workloadLabels) Has(k string) bool { return k == FaultLabel }
func (l workloadLabels) Get(k string) string {
	if k == FaultLabel {
		return l.app
	}
	return ""
}
func (l workloadLabels) Lookup(k string) (string, bool) { return l.Get(k), k == FaultLabel }

// oneOf checks a value is one of those meshbench executes.
func (c *faultCheck) oneOf(path, v string, known []string) bool {
	if slices.Contains(known, v) {
		return true
	}
	if v == "" {
		c.add(path, "missing (one of %s)", strings.Join(known, ", "))
	} else {
		c.add(path, "%q is not one meshbench executes (%s)", v, strings.Join(known, ", "))
	}
	return false
}

// unsupported refuses each set field, with why.
func (c *faultCheck) unsupported(path string, set map[string]bool, why string) {
	for _, f := range slices.Sorted(maps.Keys(set)) {
		if set[f] {
			c.add(join(path, f), "not supported: %s", why)
		}
	}
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// jsonPath turns a path of Go field names (as Chaos Mesh's validation
// reports them: "Spec.TcParameter.Delay.Latency", "Spec.direction") into
// the object's JSON field path ("spec.delay.latency"): inline embedded
// structs add no segment. Segments it cannot follow are kept as they are.
func jsonPath(t reflect.Type, goPath string) string {
	var out []string
	for _, seg := range strings.Split(goPath, ".") {
		name, index, _ := strings.Cut(seg, "[")
		if index != "" {
			index = "[" + index
		}
		for t != nil && t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		var f *reflect.StructField
		if t != nil && t.Kind() == reflect.Struct {
			for i := 0; i < t.NumField(); i++ {
				sf := t.Field(i)
				jn, opts, _ := strings.Cut(sf.Tag.Get("json"), ",")
				if sf.Name == name || jn == name && jn != "" {
					f = &sf
					if jn == "" && (sf.Anonymous || strings.Contains(opts, "inline")) {
						name = "" // inline: no segment of its own
					} else if jn != "" {
						name = jn
					}
					break
				}
			}
		}
		if f == nil {
			t = nil
		} else {
			t = f.Type
		}
		if name != "" {
			out = append(out, name)
		}
		if index != "" {
			if len(out) == 0 {
				out = append(out, "")
			}
			out[len(out)-1] += index
			for t != nil && t.Kind() == reflect.Pointer {
				t = t.Elem()
			}
			if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Map) {
				t = t.Elem()
			}
		}
	}
	return strings.Join(out, ".")
}
