// Package xds reads the proxy's configuration as xDS resources, the Envoy v3
// types of go-control-plane (Listener, RouteConfiguration, Cluster,
// ClusterLoadAssignment), from a bundle file shaped like a
// DiscoveryResponse, reports every field outside the supported subset by
// name, and translates the resources into the proxy's compiled Config.
//
// It is the configuration front end of package proxy; a control plane
// serving the same resources over ADS builds on it.
package xds

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Type URLs of the resources a bundle may hold.
const (
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

// Extension types referenced so that their protobuf types are registered
// for Any resolution; the subset check then names what is unsupported.
var (
	_ = &faultv3.HTTPFault{}
	_ = &rbacfilterv3.RBAC{}
	_ = &streamv3.StderrAccessLog{}
	_ = &hcmv3.HttpConnectionManager{}
	_ = &routerv3.Router{}
	_ = &tlsv3.UpstreamTlsContext{}
	_ = &upstreamhttpv3.HttpProtocolOptions{}
)

// Bundle is a set of xDS resources by type.
type Bundle struct {
	VersionInfo string
	Listeners   []*listenerv3.Listener
	Routes      []*routev3.RouteConfiguration
	Clusters    []*clusterv3.Cluster
	Endpoints   []*endpointv3.ClusterLoadAssignment
}

var unresolvedRE = regexp.MustCompile(`unable to resolve "([^"]+)"`)

// ReadFile decodes a bundle file (YAML or JSON).
func ReadFile(path string) (*Bundle, error) { return readFile(path, Decode) }

// ReadFileAny is ReadFile with DecodeAny.
func ReadFileAny(path string) (*Bundle, error) { return readFile(path, DecodeAny) }

func readFile(path string, decode func([]byte) (*Bundle, error)) (*Bundle, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// Decode reads a bundle: a DiscoveryResponse in protobuf JSON, or the same
// written as YAML, whose resources may be of any of the four types. Every
// field outside the supported subset is an error naming it.
func Decode(data []byte) (*Bundle, error) { return decode(data, true) }

// DecodeAny is Decode for a bundle meant for another xDS client
// (grpc-go's): the resources' types are checked, not the proxy's subset.
func DecodeAny(data []byte) (*Bundle, error) { return decode(data, false) }

func decode(data []byte, subset bool) (*Bundle, error) {
	js, err := toJSON(data)
	if err != nil {
		return nil, err
	}
	var dr discoveryv3.DiscoveryResponse
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, &dr); err != nil {
		if m := unresolvedRE.FindStringSubmatch(err.Error()); m != nil {
			return nil, fmt.Errorf("decode xDS bundle: unsupported type %s (not an Envoy v3 type meshbench knows)", m[1])
		}
		return nil, fmt.Errorf("decode xDS bundle: %w", err)
	}
	b := &Bundle{VersionInfo: dr.GetVersionInfo()}
	var problems []string
	for i, a := range dr.GetResources() {
		if subset {
			problems = append(problems, b.check(a, fmt.Sprintf("resources[%d]", i))...)
		} else if _, _, err := b.add(a, fmt.Sprintf("resources[%d]", i)); err != nil {
			problems = append(problems, err.Error())
		}
	}
	switch {
	case len(problems) > 0 && subset:
		return nil, fmt.Errorf("xDS bundle uses what meshbench's proxy does not support:\n  %s", strings.Join(problems, "\n  "))
	case len(problems) > 0:
		return nil, fmt.Errorf("xDS bundle: %s", strings.Join(problems, "; "))
	}
	return b, nil
}

// add decodes one resource into the bundle and returns it, with where it
// is for messages; an error when it cannot be decoded or is of another
// type.
func (b *Bundle) add(a *anypb.Any, where string) (proto.Message, string, error) {
	msg, err := a.UnmarshalNew()
	if err != nil {
		return nil, where, fmt.Errorf("%s: %v", where, err)
	}
	switch r := msg.(type) {
	case *listenerv3.Listener:
		b.Listeners = append(b.Listeners, r)
		where += fmt.Sprintf(" (Listener %q)", r.GetName())
	case *routev3.RouteConfiguration:
		b.Routes = append(b.Routes, r)
		where += fmt.Sprintf(" (RouteConfiguration %q)", r.GetName())
	case *clusterv3.Cluster:
		b.Clusters = append(b.Clusters, r)
		where += fmt.Sprintf(" (Cluster %q)", r.GetName())
	case *endpointv3.ClusterLoadAssignment:
		b.Endpoints = append(b.Endpoints, r)
		where += fmt.Sprintf(" (ClusterLoadAssignment %q)", r.GetClusterName())
	default:
		return nil, where, fmt.Errorf("%s: unsupported resource type %s", where, a.GetTypeUrl())
	}
	return msg, where, nil
}

// check adds one resource to the bundle and returns what in it is outside
// the supported subset (or why it could not be decoded).
func (b *Bundle) check(a *anypb.Any, where string) []string {
	msg, where, err := b.add(a, where)
	if err != nil {
		return []string{err.Error()}
	}
	return unsupported(msg, where)
}

// Resources returns the bundle's resources by type URL.
func (b *Bundle) Resources() map[string][]proto.Message {
	out := map[string][]proto.Message{}
	for _, l := range b.Listeners {
		out[ListenerType] = append(out[ListenerType], l)
	}
	for _, r := range b.Routes {
		out[RouteType] = append(out[RouteType], r)
	}
	for _, c := range b.Clusters {
		out[ClusterType] = append(out[ClusterType], c)
	}
	for _, e := range b.Endpoints {
		out[EndpointType] = append(out[EndpointType], e)
	}
	return out
}

// toJSON accepts JSON as is and converts YAML to JSON.
func toJSON(data []byte) ([]byte, error) {
	trimmed := strings.TrimSpace(string(data))
	if strings.HasPrefix(trimmed, "{") {
		return data, nil
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("decode xDS bundle YAML: %w", err)
	}
	return json.Marshal(v)
}

// Marshal writes the bundle as a DiscoveryResponse in indented protobuf
// JSON, the form Decode reads.
func (b *Bundle) Marshal() ([]byte, error) {
	dr := &discoveryv3.DiscoveryResponse{VersionInfo: b.VersionInfo}
	res := b.Resources()
	var all []proto.Message
	for _, typ := range []string{ListenerType, RouteType, ClusterType, EndpointType} {
		all = append(all, res[typ]...)
	}
	for _, m := range all {
		a, err := anypb.New(m)
		if err != nil {
			return nil, err
		}
		dr.Resources = append(dr.Resources, a)
	}
	out, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(dr)
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
