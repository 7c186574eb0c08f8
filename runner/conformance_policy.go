package runner

import (
	"fmt"

	"github.com/meshbench/meshbench/scenarios"
)

// The suite's policy objects, as the established suite's test steps apply
// them (learn-layer5 smi-conformance test-yamls), with this application's
// names: app-a, app-b and app-c are their own service accounts.
const (
	accessYAML = `policies:
  - apiVersion: specs.smi-spec.io/v1alpha4
    kind: TCPRoute
    metadata: {name: service-tcp-route}
    spec: {matches: {ports: []}}
  - apiVersion: access.smi-spec.io/v1alpha3
    kind: TrafficTarget
    metadata: {name: service-targets}
    spec:
      destination: {kind: ServiceAccount, name: app-b}
      sources: [{kind: ServiceAccount, name: app-a}]
      rules: [{kind: TCPRoute, name: service-tcp-route}]
`
	specsYAML = `policies:
  - apiVersion: specs.smi-spec.io/v1alpha4
    kind: HTTPRouteGroup
    metadata: {name: http-rg}
    spec:
      matches: [{name: testMatch, pathRegex: %q, methods: [%q]}]
  - apiVersion: access.smi-spec.io/v1alpha3
    kind: TrafficTarget
    metadata: {name: service-targets}
    spec:
      destination: {kind: ServiceAccount, name: app-b}
      sources: [{kind: ServiceAccount, name: app-a}]
      rules: [{kind: HTTPRouteGroup, name: http-rg, matches: [testMatch]}]
`
	splitYAML = `policies:
  - apiVersion: split.smi-spec.io/v1alpha4
    kind: TrafficSplit
    metadata: {name: server-split}
    spec:
      service: app-svc
      backends: [{service: app-b, weight: %d}, {service: app-c, weight: %d}]
`
)

func mustPolicies(name, doc string) []scenarios.Policy {
	objs, err := scenarios.ParsePolicies(name, []byte(doc))
	if err != nil {
		panic(fmt.Sprintf("conformance policy %s: %v", name, err)) // the suite's own text
	}
	return objs
}

func accessTarget() []scenarios.Policy { return mustPolicies("traffic-access", accessYAML) }

func specsPolicy(pathRegex, method string) []scenarios.Policy {
	return mustPolicies("traffic-specs", fmt.Sprintf(specsYAML, pathRegex, method))
}

func splitPolicy(b, c int) []scenarios.Policy {
	return mustPolicies("traffic-split", fmt.Sprintf(splitYAML, b, c))
}

// sampleObject is an object of kind, for asking a mesh whether it can
// express the kind at all.
func sampleObject(kind string) scenarios.Policy {
	var all []scenarios.Policy
	all = append(all, accessTarget()...)
	all = append(all, specsPolicy(".*", "GET")...)
	all = append(all, splitPolicy(1, 1)...)
	for _, p := range all {
		if p.Kind() == kind {
			return p
		}
	}
	panic("conformance: no sample " + kind)
}
