package xds

import (
	"reflect"
	"strings"
	"testing"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshbench/meshbench/proxy"
)

// TestRouteFeaturesTranslate: matches on headers and query parameters,
// weighted clusters with authority rewrites, redirects, path and host
// rewrites, header changes and regex RBAC paths come through from Envoy's
// resources to the proxy's configuration.
func TestRouteFeaturesTranslate(t *testing.T) {
	src := `
resources:
- "@type": type.googleapis.com/envoy.config.listener.v3.Listener
  name: out
  traffic_direction: OUTBOUND
  address: {socket_address: {address: 127.0.0.1, port_value: 15001}}
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: out
        http_filters:
        - name: envoy.filters.http.rbac
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
            rules:
              action: ALLOW
              policies:
                echo:
                  principals: [{authenticated: {principal_name: {exact: "spiffe://td/ns/default/sa/client"}}}]
                  permissions: [{url_path: {path: {safe_regex: {regex: "/echo.*"}}}}]
        - name: envoy.filters.http.router
          typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
        route_config:
          virtual_hosts:
          - name: app
            domains: ["*"]
            routes:
            - match:
                prefix: /api/
                headers: [{name: x-canary, string_match: {exact: "true"}}, {name: x-debug, present_match: true, invert_match: true}]
                query_parameters: [{name: v, string_match: {safe_regex: {regex: "[0-9]+"}}}]
              route: {cluster: a, prefix_rewrite: /v1/, host_rewrite_literal: api}
              request_headers_to_add: [{header: {key: x-route, value: api}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}]
              response_headers_to_remove: [server]
            - match: {prefix: /old/}
              redirect: {prefix_rewrite: /new/, response_code: PERMANENT_REDIRECT, https_redirect: true}
            - match: {path: /full}
              route: {cluster: a, regex_rewrite: {pattern: {regex: "^.*$"}, substitution: /replaced}}
            - match: {prefix: /}
              route:
                weighted_clusters:
                  clusters: [{name: a, weight: 90, host_rewrite_literal: app-v1}, {name: b, weight: 10, host_rewrite_literal: app-v2}]
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: a
  type: STATIC
  load_assignment: {cluster_name: a, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8081}}}}]}]}
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: b
  type: STATIC
  load_assignment: {cluster_name: b, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8082}}}}]}]}
`
	b, err := Decode([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Translate(b, "n", "")
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Listeners[0]
	rs := l.VirtualHosts[0].Routes
	want := []proxy.Route{
		{PathPrefix: "/api/", Headers: []proxy.HeaderMatch{{Name: "x-canary", Exact: "true"}, {Name: "x-debug", Present: true, Invert: true}},
			QueryParams: []proxy.QueryMatch{{Name: "v", Regex: "[0-9]+"}}, Cluster: "a", PrefixRewrite: "/v1/", HostRewrite: "api",
			RequestHeadersToAdd: []proxy.Header{{Name: "x-route", Value: "api"}}, ResponseHeadersToRemove: []string{"server"}},
		{PathPrefix: "/old/", Redirect: &proxy.Redirect{Scheme: "https", PrefixRewrite: "/new/", Code: 308}},
		{Path: "/full", Cluster: "a", PathRewrite: "/replaced"},
		{PathPrefix: "/", WeightedClusters: []proxy.WeightedCluster{{Name: "a", Weight: 90, HostRewrite: "app-v1"}, {Name: "b", Weight: 10, HostRewrite: "app-v2"}}},
	}
	if !reflect.DeepEqual(rs, want) {
		t.Errorf("routes:\n got %+v\nwant %+v", rs, want)
	}
	if p := l.RBAC.Policies[0]; !reflect.DeepEqual(p.PathRegexes, []string{"/echo.*"}) || p.Principals[0] != "spiffe://td/ns/default/sa/client" {
		t.Errorf("RBAC policy %+v", p)
	}
}

// TestRBACPermissionsAreAlternatives: Envoy ORs a policy's permissions and
// ANDs and_rules; the proxy's policies say the same.
func TestRBACPermissionsAreAlternatives(t *testing.T) {
	var rules rbacv3.RBAC
	err := protojson.Unmarshal([]byte(`{"action": "ALLOW", "policies": {"p": {
		"principals": [{"any": true}],
		"permissions": [
			{"url_path": {"path": {"prefix": "/public"}}},
			{"and_rules": {"rules": [
				{"url_path": {"path": {"safe_regex": {"regex": "/echo.*"}}}},
				{"or_rules": {"rules": [{"header": {"name": ":method", "string_match": {"exact": "GET"}}}, {"header": {"name": ":method", "string_match": {"exact": "HEAD"}}}]}}
			]}}
		]}}}`), &rules)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rbacPolicies(&rules)
	if err != nil {
		t.Fatal(err)
	}
	want := []proxy.Policy{
		{Name: "p[0]", Principals: []string{"*"}, PathPrefixes: []string{"/public"}},
		{Name: "p[1]", Principals: []string{"*"}, PathRegexes: []string{"/echo.*"}, Methods: []string{"GET", "HEAD"}},
	}
	if !reflect.DeepEqual(got.Policies, want) {
		t.Errorf("policies\n got %+v\nwant %+v", got.Policies, want)
	}
}

// TestRBACRefusesInexactHeaders: a header matcher that is inverted,
// case-insensitive or treats a missing header as empty is not an exact
// match; read as one, an inverted :authority would admit only what it was
// written to keep out. Such policies are refused, never narrowed.
func TestRBACRefusesInexactHeaders(t *testing.T) {
	for name, header := range map[string]string{
		"inverted authority":      `{"name": ":authority", "string_match": {"exact": "server"}, "invert_match": true}`,
		"case-insensitive method": `{"name": ":method", "string_match": {"exact": "GET", "ignore_case": true}}`,
		"missing as empty":        `{"name": ":authority", "string_match": {"exact": "server"}, "treat_missing_header_as_empty": true}`,
	} {
		var rules rbacv3.RBAC
		err := protojson.Unmarshal([]byte(`{"action": "ALLOW", "policies": {"p": {
			"principals": [{"any": true}], "permissions": [{"header": `+header+`}]}}}`), &rules)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got, err := rbacPolicies(&rules); err == nil {
			t.Errorf("%s: translated to %+v, want an error", name, got.Policies)
		}
	}
	var rules rbacv3.RBAC
	err := protojson.Unmarshal([]byte(`{"action": "ALLOW", "policies": {"p": {
		"principals": [{"header": {"name": "x-id", "string_match": {"exact": "spiffe://a"}, "invert_match": true}}],
		"permissions": [{"any": true}]}}}`), &rules)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rbacPolicies(&rules); err == nil || !strings.Contains(err.Error(), "not inverted") {
		t.Errorf("inverted header principal: %v, want an error naming it", err)
	}
}
