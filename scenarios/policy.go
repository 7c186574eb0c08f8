package scenarios

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	accessv1alpha3 "github.com/servicemeshinterface/smi-sdk-go/pkg/apis/access/v1alpha3"
	specsv1alpha4 "github.com/servicemeshinterface/smi-sdk-go/pkg/apis/specs/v1alpha4"
	splitv1alpha4 "github.com/servicemeshinterface/smi-sdk-go/pkg/apis/split/v1alpha4"
	"go.yaml.in/yaml/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Policy kinds a scenario may hold, by kind, with their apiVersions and
// the upstream Go types they decode into.
var policyKinds = map[string]struct {
	apiVersion string
	typ        reflect.Type
}{
	"TrafficTarget":  {"access.smi-spec.io/v1alpha3", reflect.TypeFor[accessv1alpha3.TrafficTarget]()},
	"HTTPRouteGroup": {"specs.smi-spec.io/v1alpha4", reflect.TypeFor[specsv1alpha4.HTTPRouteGroup]()},
	"TCPRoute":       {"specs.smi-spec.io/v1alpha4", reflect.TypeFor[specsv1alpha4.TCPRoute]()},
	"TrafficSplit":   {"split.smi-spec.io/v1alpha4", reflect.TypeFor[splitv1alpha4.TrafficSplit]()},
	"HTTPRoute":      {"gateway.networking.k8s.io/v1", reflect.TypeFor[gatewayv1.HTTPRoute]()},
	"GRPCRoute":      {"gateway.networking.k8s.io/v1", reflect.TypeFor[gatewayv1.GRPCRoute]()},
}

// PolicyKinds lists the policy kinds scenarios know, sorted.
func PolicyKinds() []string {
	var out []string
	for k := range policyKinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Policy is one traffic-policy object of a scenario: an SMI or Gateway API
// (GAMMA) object, decoded into its upstream Go type, and when it takes
// effect. An object replaces one of the same kind and name that took
// effect before it (a canary's TrafficSplit shifting 90/10 -> 50/50).
type Policy struct {
	// At is when the object takes effect, from the start of the measured
	// window; 0 is before the load starts.
	At Duration
	// Object is a pointer to the decoded object: *accessv1alpha3.TrafficTarget,
	// *specsv1alpha4.HTTPRouteGroup, *specsv1alpha4.TCPRoute,
	// *splitv1alpha4.TrafficSplit, *gatewayv1.HTTPRoute or *gatewayv1.GRPCRoute.
	Object any
}

// Kind returns the object's kind.
func (p Policy) Kind() string { return reflect.TypeOf(p.Object).Elem().Name() }

// Name returns the object's name.
func (p Policy) Name() string { return p.meta().Name }

// Key is the object's identity among the scenario's policies.
func (p Policy) Key() string { return p.Kind() + "/" + p.Name() }

func (p Policy) meta() *metav1.ObjectMeta {
	return reflect.ValueOf(p.Object).Elem().FieldByName("ObjectMeta").Addr().Interface().(*metav1.ObjectMeta)
}

// decodeNode decodes a policy strictly: at, then the object by its kind,
// every field checked against the upstream type's JSON names, with
// positions.
func (p *Policy) decodeNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind != yaml.MappingNode {
		d.errs.add(d.at(n), path, "expected a policy object (apiVersion, kind, metadata, spec), got %s", kindName(n))
		return
	}
	obj := &yaml.Node{Kind: yaml.MappingNode, Tag: n.Tag, Line: n.Line, Column: n.Column}
	var apiVersion, kind *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		switch key.Value {
		case "at":
			d.value(val, reflect.ValueOf(&p.At).Elem(), join(path, "at"))
			continue
		case "apiVersion":
			apiVersion = val
		case "kind":
			kind = val
		}
		obj.Content = append(obj.Content, key, val)
	}
	if kind == nil || apiVersion == nil {
		d.errs.add(d.at(n), path, "a policy object needs apiVersion and kind (one of %s)", strings.Join(PolicyKinds(), ", "))
		return
	}
	k, ok := policyKinds[kind.Value]
	if !ok {
		d.errs.add(d.at(kind), join(path, "kind"), "unknown policy kind %q (known: %s)", kind.Value, strings.Join(PolicyKinds(), ", "))
		return
	}
	if apiVersion.Value != k.apiVersion {
		d.errs.add(d.at(apiVersion), join(path, "apiVersion"), "%s is %s in meshbench, not %q", kind.Value, k.apiVersion, apiVersion.Value)
		return
	}
	v := reflect.New(k.typ)
	saved := d.tag
	d.tag = "json"
	d.value(obj, v.Elem(), path)
	d.tag = saved
	p.Object = v.Interface()
}

// MarshalJSON writes the object with its at offset, as a scenario holds it.
func (p Policy) MarshalJSON() ([]byte, error) {
	data, err := json.Marshal(p.Object)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	if p.At != 0 {
		m["at"] = p.At.String()
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (p *Policy) UnmarshalJSON(data []byte) error {
	var head struct {
		At         Duration `json:"at"`
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return err
	}
	k, ok := policyKinds[head.Kind]
	if !ok || k.apiVersion != head.APIVersion {
		return fmt.Errorf("unknown policy %s %s", head.APIVersion, head.Kind)
	}
	v := reflect.New(k.typ)
	if err := json.Unmarshal(data, v.Interface()); err != nil { // "at" is not a field: ignored
		return err
	}
	p.At, p.Object = head.At, v.Interface()
	return nil
}

// PoliciesAt returns the objects in force at offset at: those whose At is
// not later, each the last of its kind and name.
func (s *Scenario) PoliciesAt(at Duration) []Policy {
	var out []Policy
	for _, p := range s.Policies {
		if p.At > at {
			continue
		}
		if i := slices.IndexFunc(out, func(q Policy) bool { return q.Key() == p.Key() }); i >= 0 {
			out[i] = p
			continue
		}
		out = append(out, p)
	}
	return out
}

// PolicyChanges returns the offsets at which the policy in force changes
// after the load starts, in order.
func (s *Scenario) PolicyChanges() []Duration {
	var out []Duration
	for _, p := range s.Policies {
		if p.At > 0 && !slices.Contains(out, p.At) {
			out = append(out, p.At)
		}
	}
	slices.Sort(out)
	return out
}

// PolicyKindsUsed returns the kinds of the scenario's policies, sorted.
func (s *Scenario) PolicyKindsUsed() []string {
	var out []string
	for _, p := range s.Policies {
		if !slices.Contains(out, p.Kind()) {
			out = append(out, p.Kind())
		}
	}
	sort.Strings(out)
	return out
}

// Alternatives returns, for each service that selects others' workloads
// (Selects), or that a TrafficSplit or an
// HTTPRoute/GRPCRoute sends elsewhere at any point of the run, the
// services it may send to: its callers may reach them.
func (s *Scenario) Alternatives() map[string][]string {
	out := map[string][]string{}
	add := func(root, backend string) {
		if root != "" && backend != "" && backend != root && !slices.Contains(out[root], backend) {
			out[root] = append(out[root], backend)
		}
	}
	for _, svc := range s.Topology.Services {
		for _, b := range svc.Selects {
			add(svc.Name, b)
		}
	}
	for _, p := range s.Policies {
		switch o := p.Object.(type) {
		case *splitv1alpha4.TrafficSplit:
			for _, b := range o.Spec.Backends {
				add(o.Spec.Service, b.Service)
			}
		case *gatewayv1.HTTPRoute:
			for _, parent := range serviceParents(o.Spec.ParentRefs) {
				for _, r := range o.Spec.Rules {
					for _, b := range r.BackendRefs {
						add(parent, string(b.Name))
					}
				}
			}
		case *gatewayv1.GRPCRoute:
			for _, parent := range serviceParents(o.Spec.ParentRefs) {
				for _, r := range o.Spec.Rules {
					for _, b := range r.BackendRefs {
						add(parent, string(b.Name))
					}
				}
			}
		}
	}
	return out
}

// serviceParents are the Services a GAMMA route attaches to.
func serviceParents(refs []gatewayv1.ParentReference) []string {
	var out []string
	for _, r := range refs {
		if isServiceRef(r.Group, r.Kind) {
			out = append(out, string(r.Name))
		}
	}
	return out
}

// isServiceRef says a reference names a core Service (GAMMA's parent and
// backends).
func isServiceRef(group *gatewayv1.Group, kind *gatewayv1.Kind) bool {
	return (group == nil || *group == "" || *group == "core") && kind != nil && *kind == "Service"
}

// ParsePolicies reads a YAML document whose policies: list holds policy
// objects, decoded as a scenario's are (strictly, positions in errors).
func ParsePolicies(file string, data []byte) ([]Policy, error) {
	var doc struct {
		Policies []Policy `yaml:"policies"`
	}
	if _, err := decodeStrict(file, data, &doc); err != nil {
		return nil, err
	}
	return doc.Policies, nil
}
