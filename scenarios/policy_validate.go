package scenarios

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"

	accessv1alpha3 "github.com/servicemeshinterface/smi-sdk-go/pkg/apis/access/v1alpha3"
	specsv1alpha4 "github.com/servicemeshinterface/smi-sdk-go/pkg/apis/specs/v1alpha4"
	splitv1alpha4 "github.com/servicemeshinterface/smi-sdk-go/pkg/apis/split/v1alpha4"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// What a scenario does with a (mesh, mode) that cannot express its policies.
const (
	PolicyRefuse = "refuse"
	PolicySkip   = "skip"
)

// PolicyNamespace is the namespace of the topology's workloads, the only
// one policy objects may name.
const PolicyNamespace = "default"

// validatePolicies checks each object against the topology: names,
// references to services and service accounts, weights, matches, and
// when it takes effect.
func (s *Scenario) validatePolicies(add addFunc) {
	if len(s.Policies) == 0 {
		if _, set := s.pos["onUnsupportedPolicy"]; set && s.OnUnsupportedPolicy != "" {
			add("onUnsupportedPolicy", "set, but the scenario has no policies")
		}
		return
	}
	if s.OnUnsupportedPolicy != PolicyRefuse && s.OnUnsupportedPolicy != PolicySkip {
		add("onUnsupportedPolicy", "unknown value %q (refuse, skip)", s.OnUnsupportedPolicy)
	}
	services := map[string]bool{}
	for _, svc := range s.Topology.ServiceList() {
		services[svc.Name] = true
	}
	accounts := map[string]bool{s.Topology.Client.Name: true}
	for name := range services {
		accounts[name] = true
	}
	declared := map[string]bool{}
	for _, p := range s.Policies {
		if p.Object != nil {
			declared[p.Key()] = true
		}
	}
	v := &policyCheck{add: add, services: services, accounts: accounts, declared: declared}
	for i, p := range s.Policies {
		path := fmt.Sprintf("policies[%d]", i)
		if p.Object == nil {
			continue // the decoder reported why
		}
		v.path = path
		m := p.meta()
		if !nameRE.MatchString(m.Name) {
			add(path+".metadata.name", "%q is not a valid name: use 1-32 lowercase letters, digits and '-'", m.Name)
		}
		if m.Namespace != "" && m.Namespace != PolicyNamespace {
			add(path+".metadata.namespace", "the topology's workloads are in namespace %q, not %q", PolicyNamespace, m.Namespace)
		}
		if p.At < 0 || p.At >= s.Load.Duration {
			add(path+".at", "must be from 0 to less than load.duration (%s), got %s", s.Load.Duration, p.At)
		}
		switch o := p.Object.(type) {
		case *splitv1alpha4.TrafficSplit:
			v.trafficSplit(o)
		case *accessv1alpha3.TrafficTarget:
			v.trafficTarget(o)
		case *specsv1alpha4.HTTPRouteGroup:
			v.httpRouteGroup(o)
		case *specsv1alpha4.TCPRoute:
		case *gatewayv1.HTTPRoute:
			v.httpRoute(o)
		case *gatewayv1.GRPCRoute:
			v.grpcRoute(o)
		}
	}
}

type policyCheck struct {
	add      addFunc
	path     string
	services map[string]bool
	accounts map[string]bool
	declared map[string]bool
}

func (v *policyCheck) service(path, name string) {
	if !v.services[name] {
		v.add(path, "unknown service %q (the topology's services: %s)", name, sortedKeys(v.services))
	}
}

func sortedKeys(m map[string]bool) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return fmt.Sprint(out)
}

func (v *policyCheck) trafficSplit(o *splitv1alpha4.TrafficSplit) {
	v.service(v.path+".spec.service", o.Spec.Service)
	if len(o.Spec.Backends) == 0 {
		v.add(v.path+".spec.backends", "a TrafficSplit needs at least one backend")
	}
	sum := 0
	for i, b := range o.Spec.Backends {
		bp := fmt.Sprintf("%s.spec.backends[%d]", v.path, i)
		v.service(bp+".service", b.Service)
		if b.Weight < 0 {
			v.add(bp+".weight", "must not be negative, got %d", b.Weight)
		}
		sum += b.Weight
	}
	if len(o.Spec.Backends) > 0 && sum <= 0 {
		v.add(v.path+".spec.backends", "the weights add up to %d: at least one backend must have a weight", sum)
	}
	for i, m := range o.Spec.Matches {
		v.ruleRef(fmt.Sprintf("%s.spec.matches[%d]", v.path, i), m.Kind, m.Name)
	}
}

func (v *policyCheck) ruleRef(path, kind, name string) {
	if kind != "HTTPRouteGroup" && kind != "TCPRoute" {
		v.add(path+".kind", "must be HTTPRouteGroup or TCPRoute, got %q", kind)
		return
	}
	if !v.declared[kind+"/"+name] {
		v.add(path+".name", "no %s named %q among the scenario's policies", kind, name)
	}
}

func (v *policyCheck) trafficTarget(o *accessv1alpha3.TrafficTarget) {
	subject := func(path string, s accessv1alpha3.IdentityBindingSubject) {
		if s.Kind != "ServiceAccount" {
			v.add(path+".kind", "must be ServiceAccount, got %q", s.Kind)
		}
		if !v.accounts[s.Name] {
			v.add(path+".name", "unknown service account %q (each workload's is its name: %s)", s.Name, sortedKeys(v.accounts))
		}
		if s.Namespace != "" && s.Namespace != PolicyNamespace {
			v.add(path+".namespace", "the topology's workloads are in namespace %q, not %q", PolicyNamespace, s.Namespace)
		}
	}
	subject(v.path+".spec.destination", o.Spec.Destination)
	for i, src := range o.Spec.Sources {
		subject(fmt.Sprintf("%s.spec.sources[%d]", v.path, i), src)
	}
	for i, r := range o.Spec.Rules {
		v.ruleRef(fmt.Sprintf("%s.spec.rules[%d]", v.path, i), r.Kind, r.Name)
	}
}

var methods = []string{"*", http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace}

func (v *policyCheck) httpRouteGroup(o *specsv1alpha4.HTTPRouteGroup) {
	names := map[string]bool{}
	for i, m := range o.Spec.Matches {
		mp := fmt.Sprintf("%s.spec.matches[%d]", v.path, i)
		if m.Name == "" || names[m.Name] {
			v.add(mp+".name", "each match needs a name of its own")
		}
		names[m.Name] = true
		if m.PathRegex != "" {
			if _, err := regexp.Compile(m.PathRegex); err != nil {
				v.add(mp+".pathRegex", "%v", err)
			}
		}
		for j, method := range m.Methods {
			if !slices.Contains(methods, method) {
				v.add(fmt.Sprintf("%s.methods[%d]", mp, j), "unknown method %q", method)
			}
		}
	}
}

// parents checks a GAMMA route's parents: Services of the topology.
func (v *policyCheck) parents(refs []gatewayv1.ParentReference) {
	if len(refs) == 0 {
		v.add(v.path+".spec.parentRefs", "a mesh route attaches to a Service: name one in parentRefs (kind: Service)")
	}
	for i, r := range refs {
		p := fmt.Sprintf("%s.spec.parentRefs[%d]", v.path, i)
		if !isServiceRef(r.Group, r.Kind) {
			v.add(p+".kind", "meshbench's routes attach to Services (GAMMA): set kind: Service")
			continue
		}
		v.service(p+".name", string(r.Name))
	}
}

func (v *policyCheck) backend(path string, b gatewayv1.BackendRef) {
	if b.Kind != nil && !isServiceRef(b.Group, b.Kind) {
		v.add(path+".kind", "backends are Services, got %q", *b.Kind)
	}
	v.service(path+".name", string(b.Name))
	if b.Weight != nil && *b.Weight < 0 {
		v.add(path+".weight", "must not be negative, got %d", *b.Weight)
	}
}

func (v *policyCheck) weights(path string, ws []*int32) {
	sum, n := int32(0), 0
	for _, w := range ws {
		n++
		if w == nil {
			sum++ // the default weight is 1
		} else {
			sum += *w
		}
	}
	if n > 0 && sum <= 0 {
		v.add(path, "the backends' weights add up to %d: at least one must have a weight", sum)
	}
}

func (v *policyCheck) httpRoute(o *gatewayv1.HTTPRoute) {
	v.parents(o.Spec.ParentRefs)
	for i, r := range o.Spec.Rules {
		rp := fmt.Sprintf("%s.spec.rules[%d]", v.path, i)
		var ws []*int32
		for j, b := range r.BackendRefs {
			v.backend(fmt.Sprintf("%s.backendRefs[%d]", rp, j), b.BackendRef)
			ws = append(ws, b.Weight)
		}
		v.weights(rp+".backendRefs", ws)
		for j, m := range r.Matches {
			mp := fmt.Sprintf("%s.matches[%d]", rp, j)
			if m.Path != nil && m.Path.Type != nil && *m.Path.Type == gatewayv1.PathMatchRegularExpression && m.Path.Value != nil {
				if _, err := regexp.Compile(*m.Path.Value); err != nil {
					v.add(mp+".path.value", "%v", err)
				}
			}
		}
	}
}

func (v *policyCheck) grpcRoute(o *gatewayv1.GRPCRoute) {
	v.parents(o.Spec.ParentRefs)
	for i, r := range o.Spec.Rules {
		rp := fmt.Sprintf("%s.spec.rules[%d]", v.path, i)
		var ws []*int32
		for j, b := range r.BackendRefs {
			v.backend(fmt.Sprintf("%s.backendRefs[%d]", rp, j), b.BackendRef)
			ws = append(ws, b.Weight)
		}
		v.weights(rp+".backendRefs", ws)
	}
}
