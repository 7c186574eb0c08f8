package scenarios

import (
	"reflect"
	"slices"

	accessv1alpha3 "github.com/servicemeshinterface/smi-sdk-go/pkg/apis/access/v1alpha3"
	specsv1alpha4 "github.com/servicemeshinterface/smi-sdk-go/pkg/apis/specs/v1alpha4"
	splitv1alpha4 "github.com/servicemeshinterface/smi-sdk-go/pkg/apis/split/v1alpha4"
	"go.yaml.in/yaml/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Policy kinds a scenario may hold, by kind, with their apiVersions and
// the upstream Go types they decode into.
var policyKinds = objectKinds{
	"TrafficTarget":  {"access.smi-spec.io/v1alpha3", reflect.TypeFor[accessv1alpha3.TrafficTarget]()},
	"HTTPRouteGroup": {"specs.smi-spec.io/v1alpha4", reflect.TypeFor[specsv1alpha4.HTTPRouteGroup]()},
	"TCPRoute":       {"specs.smi-spec.io/v1alpha4", reflect.TypeFor[specsv1alpha4.TCPRoute]()},
	"TrafficSplit":   {"split.smi-spec.io/v1alpha4", reflect.TypeFor[splitv1alpha4.TrafficSplit]()},
	"HTTPRoute":      {"gateway.networking.k8s.io/v1", reflect.TypeFor[gatewayv1.HTTPRoute]()},
	"GRPCRoute":      {"gateway.networking.k8s.io/v1", reflect.TypeFor[gatewayv1.GRPCRoute]()},
}

// PolicyKinds lists the policy kinds scenarios know, sorted.
func PolicyKinds() []string { return policyKinds.names() }

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
func (p Policy) Kind() string { return objectKindName(p.Object) }

// Name returns the object's name.
func (p Policy) Name() string { return p.meta().Name }

// Key is the object's identity among the scenario's policies.
func (p Policy) Key() string { return p.Kind() + "/" + p.Name() }

func (p Policy) meta() *metav1.ObjectMeta { return objectMeta(p.Object) }

// decodeNode decodes a policy strictly: at, then the object by its kind.
func (p *Policy) decodeNode(d *decoder, n *yaml.Node, path string) {
	p.Object = decodeObject(d, n, path, "policy", policyKinds, &p.At)
}

// MarshalJSON writes the object with its at offset, as a scenario holds it.
func (p Policy) MarshalJSON() ([]byte, error) { return marshalObject(p.Object, p.At) }

// UnmarshalJSON reads what MarshalJSON writes.
func (p *Policy) UnmarshalJSON(data []byte) (err error) {
	p.At, p.Object, err = unmarshalObject(data, "policy", policyKinds)
	return err
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
	slices.Sort(out)
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
