package xds

import (
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// all marks a message whose every field is understood (well-known types).
const all = "*"

// supported is the xDS subset the proxy implements: for each message, the
// fields it reads. A field set in a bundle but missing here is reported
// rather than silently ignored, so a configuration never means less than it
// says. Extend this table together with translate.go.
var supported = map[protoreflect.FullName][]string{
	"envoy.config.listener.v3.Listener":                        {"name", "address", "filter_chains", "traffic_direction", "internal_listener"},
	"envoy.config.listener.v3.Listener.InternalListenerConfig": {},
	"envoy.config.core.v3.EnvoyInternalAddress":                {"server_listener_name", "endpoint_id"},
	"envoy.config.listener.v3.FilterChain":                     {"name", "filters", "transport_socket", "filter_chain_match"},
	"envoy.config.listener.v3.FilterChainMatch":                {"source_prefix_ranges"},
	"envoy.config.core.v3.CidrRange":                           {"address_prefix", "prefix_len"},
	"envoy.config.listener.v3.Filter":                          {"name", "typed_config"},
	"envoy.config.core.v3.Address":                             {"socket_address", "envoy_internal_address"},
	"envoy.config.core.v3.SocketAddress":                       {"address", "port_value", "protocol"},
	"envoy.config.core.v3.TransportSocket":                     {"name", "typed_config"},
	"envoy.config.core.v3.HttpProtocolOptions":                 {"idle_timeout"},
	"envoy.config.core.v3.ConfigSource":                        {all},
	"envoy.config.core.v3.Locality":                            {all},

	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager": {
		"stat_prefix", "codec_type", "route_config", "rds", "http_filters", "use_remote_address",
		"request_timeout", "request_headers_timeout", "common_http_protocol_options", "max_request_headers_kb",
		"http2_protocol_options", "access_log",
	},
	"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy":                 {"stat_prefix", "cluster", "idle_timeout", "tunneling_config"},
	"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy.TunnelingConfig": {"hostname"},
	"envoy.config.accesslog.v3.AccessLog":                                    {"name", "typed_config"},
	"envoy.extensions.access_loggers.stream.v3.StderrAccessLog":              {},
	"envoy.extensions.access_loggers.stream.v3.StdoutAccessLog":              {},
	"envoy.config.route.v3.HeaderMatcher":                                    {"name", "string_match", "present_match", "invert_match"},
	"envoy.config.route.v3.QueryParameterMatcher":                            {"name", "string_match", "present_match"},
	"envoy.config.route.v3.WeightedCluster":                                  {"clusters"},
	"envoy.config.route.v3.WeightedCluster.ClusterWeight":                    {"name", "weight", "host_rewrite_literal"},
	"envoy.config.route.v3.RedirectAction": {"https_redirect", "scheme_redirect", "host_redirect", "port_redirect",
		"path_redirect", "prefix_rewrite", "response_code"},
	"envoy.type.matcher.v3.RegexMatchAndSubstitute":                  {"pattern", "substitution"},
	"envoy.config.route.v3.RetryPolicy":                              {"retry_on", "num_retries", "per_try_timeout", "retriable_status_codes", "retriable_request_headers"},
	"envoy.extensions.filters.http.fault.v3.HTTPFault":               {"delay", "abort", "headers"},
	"envoy.extensions.filters.common.fault.v3.FaultDelay":            {"fixed_delay", "percentage"},
	"envoy.extensions.filters.http.fault.v3.FaultAbort":              {"http_status", "grpc_status", "percentage"},
	"envoy.type.v3.FractionalPercent":                                {all},
	"envoy.type.v3.Percent":                                          {all},
	"envoy.extensions.filters.http.rbac.v3.RBAC":                     {"rules"},
	"envoy.config.rbac.v3.RBAC":                                      {"action", "policies"},
	"envoy.config.rbac.v3.Policy":                                    {"permissions", "principals"},
	"envoy.config.rbac.v3.Permission":                                {"any", "url_path", "header", "or_rules", "and_rules"},
	"envoy.config.rbac.v3.Permission.Set":                            {"rules"},
	"envoy.config.rbac.v3.Principal":                                 {"any", "authenticated", "header", "or_ids"},
	"envoy.config.rbac.v3.Principal.Set":                             {"ids"},
	"envoy.config.rbac.v3.Principal.Authenticated":                   {"principal_name"},
	"envoy.type.matcher.v3.PathMatcher":                              {"path"},
	"envoy.config.cluster.v3.CircuitBreakers":                        {"thresholds"},
	"envoy.config.cluster.v3.CircuitBreakers.Thresholds":             {"priority", "max_connections", "max_pending_requests", "max_requests", "retry_budget"},
	"envoy.config.cluster.v3.CircuitBreakers.Thresholds.RetryBudget": {"budget_percent", "min_retry_concurrency"},
	"envoy.config.cluster.v3.OutlierDetection": {"consecutive_5xx", "consecutive_gateway_failure", "base_ejection_time",
		"max_ejection_percent", "enforcing_consecutive_5xx", "enforcing_consecutive_gateway_failure"},
	"envoy.config.core.v3.Http2ProtocolOptions":                                 {"max_concurrent_streams", "connection_keepalive"},
	"envoy.config.core.v3.KeepaliveSettings":                                    {"interval", "timeout"},
	"envoy.config.core.v3.HeaderValueOption":                                    {"header", "append_action"},
	"envoy.config.core.v3.HeaderValue":                                          {"key", "value"},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions":                    {"explicit_http_config", "common_http_protocol_options"},
	"envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig": {"http_protocol_options", "http2_protocol_options"},
	"envoy.config.core.v3.Http1ProtocolOptions":                                 {},
	"envoy.extensions.filters.network.http_connection_manager.v3.Rds":           {"route_config_name", "config_source"},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter":    {"name", "typed_config"},
	"envoy.extensions.filters.http.router.v3.Router":                            {},

	"envoy.config.route.v3.RouteConfiguration": {"name", "virtual_hosts"},
	"envoy.config.route.v3.VirtualHost":        {"name", "domains", "routes", "request_headers_to_add", "request_headers_to_remove"},
	"envoy.config.route.v3.Route": {"name", "match", "route", "redirect", "typed_per_filter_config",
		"request_headers_to_add", "request_headers_to_remove", "response_headers_to_add", "response_headers_to_remove"},
	"envoy.config.route.v3.RouteMatch":                              {"prefix", "path", "safe_regex", "path_separated_prefix", "connect_matcher", "headers", "query_parameters"},
	"envoy.config.route.v3.RouteMatch.ConnectMatcher":               {},
	"envoy.config.route.v3.RouteAction.UpgradeConfig":               {"upgrade_type", "connect_config"},
	"envoy.config.route.v3.RouteAction.UpgradeConfig.ConnectConfig": {},
	"envoy.type.matcher.v3.RegexMatcher":                            {"regex", "google_re2"},
	"envoy.type.matcher.v3.RegexMatcher.GoogleRE2":                  {},
	"envoy.config.route.v3.RouteAction": {"cluster", "weighted_clusters", "timeout", "retry_policy",
		"prefix_rewrite", "regex_rewrite", "host_rewrite_literal", "upgrade_configs"},

	"envoy.config.cluster.v3.Cluster": {
		"name", "type", "connect_timeout", "lb_policy", "load_assignment", "eds_cluster_config",
		"transport_socket", "common_http_protocol_options", "typed_extension_protocol_options",
		"upstream_bind_config", "circuit_breakers", "outlier_detection",
	},
	"envoy.config.core.v3.BindConfig":                  {"source_address", "socket_options"},
	"envoy.config.core.v3.SocketOption":                {"description", "level", "name", "int_value", "state"},
	"envoy.config.cluster.v3.Cluster.EdsClusterConfig": {"service_name", "eds_config"},

	"envoy.config.endpoint.v3.ClusterLoadAssignment": {"cluster_name", "endpoints"},
	"envoy.config.endpoint.v3.LocalityLbEndpoints":   {"locality", "lb_endpoints"},
	"envoy.config.endpoint.v3.LbEndpoint":            {"endpoint"},
	"envoy.config.endpoint.v3.Endpoint":              {"address"},

	"envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext":           {"common_tls_context", "sni"},
	"envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext":         {"common_tls_context", "require_client_certificate"},
	"envoy.extensions.transport_sockets.tls.v3.CommonTlsContext":             {"tls_certificates", "validation_context", "alpn_protocols"},
	"envoy.extensions.transport_sockets.tls.v3.TlsCertificate":               {"certificate_chain", "private_key"},
	"envoy.extensions.transport_sockets.tls.v3.CertificateValidationContext": {"trusted_ca", "match_typed_subject_alt_names"},
	"envoy.extensions.transport_sockets.tls.v3.SubjectAltNameMatcher":        {"san_type", "matcher"},
	"envoy.type.matcher.v3.StringMatcher":                                    {"exact", "prefix", "safe_regex"},
	"envoy.config.core.v3.DataSource":                                        {"filename"},

	"google.protobuf.Duration":    {all},
	"google.protobuf.UInt32Value": {all},
	"google.protobuf.BoolValue":   {all},
}

// unsupported lists every set field of m (recursively, through Any) that
// the subset does not implement, each with its path under where.
func unsupported(m proto.Message, where string) []string {
	var out []string
	walk(m.ProtoReflect(), where, &out)
	sort.Strings(out)
	return out
}

func walk(m protoreflect.Message, path string, out *[]string) {
	name := m.Descriptor().FullName()
	if name == "google.protobuf.Any" {
		a := m.Interface().(*anypb.Any)
		inner, err := a.UnmarshalNew()
		if err != nil {
			*out = append(*out, fmt.Sprintf("%s: unsupported type %s", path, a.GetTypeUrl()))
			return
		}
		walk(inner.ProtoReflect(), path+"<"+string(inner.ProtoReflect().Descriptor().Name())+">", out)
		return
	}
	fields, known := supported[name]
	if !known {
		*out = append(*out, fmt.Sprintf("%s: unsupported message %s", path, name))
		return
	}
	if len(fields) == 1 && fields[0] == all {
		return
	}
	ok := map[string]bool{}
	for _, f := range fields {
		ok[f] = true
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		fp := path + "." + string(fd.Name())
		if !ok[string(fd.Name())] {
			*out = append(*out, fmt.Sprintf("%s: unsupported field %s.%s", fp, name, fd.Name()))
			return true
		}
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walk(l.Get(i).Message(), fmt.Sprintf("%s[%d]", fp, i), out)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				walk(mv.Message(), fmt.Sprintf("%s[%q]", fp, k.String()), out)
				return true
			})
		case fd.Message() != nil:
			walk(v.Message(), fp, out)
		}
		return true
	})
}
