// Package proxy is meshbench's own mesh data plane: an L7 proxy whose whole
// configuration is data. Config is the compiled form (listeners, routes,
// clusters, endpoints, in the shape of the xDS resource model); package
// proxy/xds reads it from xDS resources, as a file now and from a control
// plane later.
//
// It is the system under test, not the harness: it never imports runner,
// scenarios or meshes, and it has no knowledge of benchmarks.
package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Config is a proxy's configuration. Its parts mirror xDS resources:
// Listener (with its HTTP route table inline, as an HCM's route_config),
// Cluster (with its ClusterLoadAssignment inline as Endpoints).
type Config struct {
	// Node names this proxy (the workload or node it serves); it appears in
	// logs and the admin endpoints.
	Node string `json:"node"`
	// Admin is the address of the admin listener (/ready, /stats,
	// /metrics, /config_dump); empty disables it.
	Admin string `json:"admin,omitempty"`
	// Mode labels metrics with the data-plane mode ("sidecar", ...).
	Mode      string     `json:"mode,omitempty"`
	Listeners []Listener `json:"listeners"`
	Clusters  []Cluster  `json:"clusters"`
}

// Direction says which side of a workload a listener faces.
type Direction string

// Listener directions.
const (
	// Outbound listeners take the local workload's requests to other services.
	Outbound Direction = "outbound"
	// Inbound listeners take other services' requests to the local workload.
	Inbound Direction = "inbound"
)

// ForwardedFor is how a listener treats X-Forwarded-For.
type ForwardedFor string

// X-Forwarded-For policies.
const (
	// ForwardedAppend appends the downstream peer's address (the default).
	ForwardedAppend ForwardedFor = "append"
	// ForwardedNone leaves the header as it arrived.
	ForwardedNone ForwardedFor = "none"
)

// Listener accepts HTTP/1.1 connections on an address and routes each
// request by its authority and path.
type Listener struct {
	Name string `json:"name"`
	// Address is where the listener binds; an Internal listener has none.
	Address string `json:"address,omitempty"`
	// Internal makes the listener internal (Envoy's internal_listener):
	// no socket, only the connections the proxy's own clusters open to it
	// by name (endpoints with Internal), each carrying the identity of
	// the stream it was opened for.
	Internal  bool      `json:"internal,omitempty"`
	Direction Direction `json:"direction"`
	// VirtualHosts are matched by the request's Host, exact domains first,
	// then "*".
	VirtualHosts []VirtualHost `json:"virtualHosts"`
	// RequestTimeout bounds a whole request when its route sets none.
	RequestTimeout Duration `json:"requestTimeout,omitempty"`
	// IdleTimeout closes downstream keep-alive connections idle this long.
	IdleTimeout Duration `json:"idleTimeout,omitempty"`
	// HeaderTimeout bounds reading a request's headers (slowloris).
	HeaderTimeout  Duration     `json:"headerTimeout,omitempty"`
	MaxHeaderBytes int          `json:"maxHeaderBytes,omitempty"`
	ForwardedFor   ForwardedFor `json:"forwardedFor,omitempty"`
	// TLS, when set, makes the listener accept only mutual TLS.
	TLS *TLS `json:"tls,omitempty"`
	// SourceRanges, when set, are the only source addresses (prefixes, or
	// addresses) whose connections the listener takes; it closes any other
	// at once, as Envoy closes a connection that matches no filter chain
	// (filter_chain_match.source_prefix_ranges). A shared node's proxy
	// uses them to take a pod's port from that pod alone.
	SourceRanges []string `json:"sourceRanges,omitempty"`
	// Codec is the downstream protocol: CodecAuto (HTTP/1.1, and HTTP/2 by
	// ALPN over TLS or by prior knowledge in cleartext), CodecHTTP1 or
	// CodecHTTP2.
	Codec Codec `json:"codec,omitempty"`
	// MaxConcurrentStreams bounds the streams of one HTTP/2 connection
	// (rapid-reset and resource exhaustion).
	MaxConcurrentStreams int `json:"maxConcurrentStreams,omitempty"`
	// HTTP2Keepalive, when set, sends a PING on a downstream HTTP/2
	// connection on which nothing arrived for Interval, and closes it
	// (ending its streams) when no answer comes within Timeout: Envoy's
	// connection_keepalive in the connection manager's
	// http2_protocol_options. Without it a peer gone silent (a partition,
	// a dead node) holds its streams until their idle timeout.
	HTTP2Keepalive *Keepalive `json:"http2Keepalive,omitempty"`
	// RBAC, when set, denies every request that no policy allows (403).
	RBAC *RBAC `json:"rbac,omitempty"`
	// AccessLog writes one JSON line per request to the proxy's log.
	AccessLog bool `json:"accessLog,omitempty"`
	// MaxRequestBytes bounds a request body (413 beyond); 0 is unlimited.
	MaxRequestBytes int64 `json:"maxRequestBytes,omitempty"`
	// TCPCluster, when set, makes this an opaque TCP listener forwarding
	// every connection to the cluster (no HTTP, no virtual hosts).
	TCPCluster string `json:"tcpCluster,omitempty"`
	// TCPTunnel, on a TCP listener, carries each connection as an HTTP/2
	// CONNECT stream (HBONE-style) to the cluster's endpoint, naming
	// TCPTunnel as the CONNECT authority: the streams of every connection
	// to a peer share the cluster's one pooled connection to it (Envoy's
	// tcp_proxy tunneling_config). The cluster must be HTTP2.
	TCPTunnel string `json:"tcpTunnel,omitempty"`
}

// RBAC allows requests that match any of its policies; others get 403.
type RBAC struct {
	Policies []Policy `json:"policies"`
}

// Policy allows principals to use permissions.
type Policy struct {
	Name string `json:"name"`
	// Principals are source SPIFFE IDs; "*" is any authenticated source.
	Principals []string `json:"principals"`
	// SourceHeader, when set, names the header that carries the source
	// identity (set by a trusted node proxy) instead of the peer
	// certificate.
	SourceHeader string `json:"sourceHeader,omitempty"`
	// Paths (exact), PathPrefixes and Methods restrict what is allowed;
	// empty allows all.
	Paths        []string `json:"paths,omitempty"`
	PathPrefixes []string `json:"pathPrefixes,omitempty"`
	// PathRegexes (RE2) must match the whole path.
	PathRegexes []string `json:"pathRegexes,omitempty"`
	Methods     []string `json:"methods,omitempty"`
	// Hosts (exact authorities: an HBONE stream's destination) restrict
	// what is allowed too; empty allows all. They are compared byte for
	// byte, as Envoy's RBAC compares :authority with an exact matcher,
	// although virtual hosts match without case: a policy for a.example
	// denies A.Example (it fails closed).
	Hosts []string `json:"hosts,omitempty"`
}

// Codec is an HTTP protocol choice.
type Codec string

// Codecs.
const (
	CodecAuto  Codec = "auto"
	CodecHTTP1 Codec = "http1"
	CodecHTTP2 Codec = "http2"
)

// Header is a header to add to requests: set (replacing any value), or,
// with Append, added beside the values the request has.
type Header struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Append bool   `json:"append,omitempty"`
}

// TLS is a mutual-TLS identity: the proxy's certificate and key, the trust
// bundle, and the peer SPIFFE IDs it accepts (any from the bundle when
// empty). Files are reloaded when they change (certificate rotation).
type TLS struct {
	CertFile   string   `json:"certFile"`
	KeyFile    string   `json:"keyFile"`
	CAFile     string   `json:"caFile"`
	AllowedIDs []string `json:"allowedIDs,omitempty"`
}

// VirtualHost is a set of routes for some authorities.
type VirtualHost struct {
	Name string `json:"name"`
	// Domains are exact authorities ("server", "server:8080") or "*".
	Domains []string `json:"domains"`
	Routes  []Route  `json:"routes"`
	// RequestHeadersToRemove are deleted from every request, then
	// RequestHeadersToAdd are set (replacing any value).
	RequestHeadersToRemove []string `json:"requestHeadersToRemove,omitempty"`
	RequestHeadersToAdd    []Header `json:"requestHeadersToAdd,omitempty"`
}

// Route sends matching requests to a cluster. The first match wins. At most
// one of Path, PathPrefix and Regex is set; none matches every path.
type Route struct {
	Name string `json:"name,omitempty"`
	// Path matches the request path exactly (query excluded).
	Path string `json:"path,omitempty"`
	// PathPrefix matches when the request path starts with it; with
	// Segments, only at a segment's end (Envoy's path_separated_prefix:
	// "/api" matches "/api" and "/api/x", not "/apix").
	PathPrefix string `json:"pathPrefix,omitempty"`
	Segments   bool   `json:"segments,omitempty"`
	// Regex (RE2 syntax) must match the whole request path.
	Regex string `json:"regex,omitempty"`
	// Methods, when set, restricts the route to these methods.
	Methods []string `json:"methods,omitempty"`
	// Headers and QueryParams must all match too.
	Headers     []HeaderMatch `json:"headers,omitempty"`
	QueryParams []QueryMatch  `json:"queryParams,omitempty"`

	// What the route does: one of Cluster, WeightedClusters (requests
	// shared by weight, as a canary's split), Redirect.
	Cluster          string            `json:"cluster,omitempty"`
	WeightedClusters []WeightedCluster `json:"weightedClusters,omitempty"`
	Redirect         *Redirect         `json:"redirect,omitempty"`

	// PrefixRewrite replaces the part of the path PathPrefix matched;
	// PathRewrite replaces the whole path; HostRewrite sets the authority.
	PrefixRewrite string `json:"prefixRewrite,omitempty"`
	PathRewrite   string `json:"pathRewrite,omitempty"`
	HostRewrite   string `json:"hostRewrite,omitempty"`
	// RequestHeadersToRemove are deleted from the request, then
	// RequestHeadersToAdd are set (replacing any value); likewise for the
	// response.
	RequestHeadersToRemove  []string `json:"requestHeadersToRemove,omitempty"`
	RequestHeadersToAdd     []Header `json:"requestHeadersToAdd,omitempty"`
	ResponseHeadersToRemove []string `json:"responseHeadersToRemove,omitempty"`
	ResponseHeadersToAdd    []Header `json:"responseHeadersToAdd,omitempty"`

	// Timeout bounds the request; 0 uses the listener's RequestTimeout.
	// Connect makes the route match CONNECT requests, and only them
	// (Envoy's connect_matcher with a CONNECT upgrade): the stream's bytes
	// are carried to an endpoint of Cluster as a TCP connection, the end
	// of an HBONE tunnel. Other routes never match CONNECT.
	Connect bool `json:"connect,omitempty"`

	Timeout Duration     `json:"timeout,omitempty"`
	Retry   *RetryPolicy `json:"retry,omitempty"`
	Fault   *Fault       `json:"fault,omitempty"`
}

// HeaderMatch matches a request header by exactly one of Exact, Prefix,
// Regex (RE2, the whole value) or Present; Invert negates it.
type HeaderMatch struct {
	Name    string `json:"name"`
	Exact   string `json:"exact,omitempty"`
	Prefix  string `json:"prefix,omitempty"`
	Regex   string `json:"regex,omitempty"`
	Present bool   `json:"present,omitempty"`
	Invert  bool   `json:"invert,omitempty"`
}

// QueryMatch matches a query parameter by Exact, Regex or Present.
type QueryMatch struct {
	Name    string `json:"name"`
	Exact   string `json:"exact,omitempty"`
	Regex   string `json:"regex,omitempty"`
	Present bool   `json:"present,omitempty"`
}

// WeightedCluster is one cluster of a split and its share (Weight of the
// route's weights together). HostRewrite, when set, is the authority
// requests sent to it carry.
type WeightedCluster struct {
	Name        string `json:"name"`
	Weight      int    `json:"weight"`
	HostRewrite string `json:"hostRewrite,omitempty"`
}

// Redirect answers a request with a redirect to the same URL with the
// parts it sets replaced.
type Redirect struct {
	Scheme string `json:"scheme,omitempty"`
	Host   string `json:"host,omitempty"`
	Port   int    `json:"port,omitempty"`
	// Path replaces the path; PrefixRewrite replaces the matched prefix.
	Path          string `json:"path,omitempty"`
	PrefixRewrite string `json:"prefixRewrite,omitempty"`
	// Code is 301 (the default), 302, 303, 307 or 308.
	Code int `json:"code,omitempty"`
}

// RetryPolicy retries failed attempts, within the cluster's retry budget.
type RetryPolicy struct {
	// RetryOn lists the conditions: "connect-failure", "reset", "5xx",
	// "gateway-error" (502, 503, 504), "retriable-status-codes".
	RetryOn              []string `json:"retryOn"`
	NumRetries           int      `json:"numRetries"`
	RetriableStatusCodes []int    `json:"retriableStatusCodes,omitempty"`
	PerTryTimeout        Duration `json:"perTryTimeout,omitempty"`
	// Methods are the methods that may be retried; empty means the
	// idempotent ones (GET, HEAD, OPTIONS, PUT, DELETE, TRACE).
	Methods []string `json:"methods,omitempty"`
}

// Fault injects delays and aborts into a share of a route's requests, as
// Envoy's HTTPFault filter does.
type Fault struct {
	DelayPercent float64  `json:"delayPercent,omitempty"`
	Delay        Duration `json:"delay,omitempty"`
	AbortPercent float64  `json:"abortPercent,omitempty"`
	// AbortStatus is the HTTP status of an abort; AbortGRPCStatus, when not
	// zero, aborts with that gRPC status instead (HTTP 200, grpc-status).
	AbortStatus     int `json:"abortStatus,omitempty"`
	AbortGRPCStatus int `json:"abortGrpcStatus,omitempty"`
	// Header, when set, limits the fault to requests that carry it.
	Header string `json:"header,omitempty"`
}

// Cluster is a named group of upstream endpoints with one connection pool
// policy.
type Cluster struct {
	Name      string     `json:"name"`
	Endpoints []Endpoint `json:"endpoints"`
	// ConnectTimeout bounds dialing an endpoint.
	ConnectTimeout Duration `json:"connectTimeout,omitempty"`
	// MaxIdleConns is the keep-alive pool size per endpoint.
	MaxIdleConns int `json:"maxIdleConns,omitempty"`
	// IdleTimeout closes pooled upstream connections idle this long.
	IdleTimeout Duration `json:"idleTimeout,omitempty"`
	// TLS, when set, makes connections to the endpoints mutual TLS.
	TLS *TLS `json:"tls,omitempty"`
	// HTTP2 sends requests as HTTP/2 streams multiplexed over one
	// connection per endpoint (h2 over TLS, or h2c in cleartext).
	HTTP2 bool `json:"http2,omitempty"`
	// HTTP2Keepalive, for HTTP2, is when a connection on which nothing
	// arrived for Interval is sent a PING, and closed (failing its
	// streams, which may then be retried elsewhere) when no answer comes
	// within Timeout: Envoy's connection_keepalive. A silent peer (a
	// partition) is otherwise noticed only by each request's timeout.
	// Default: 15 s and 5 s.
	HTTP2Keepalive *Keepalive `json:"http2Keepalive,omitempty"`
	// Mark, when not zero, sets SO_MARK on upstream sockets, so that
	// transparent interception rules let the proxy's own traffic pass.
	Mark int `json:"mark,omitempty"`
	// LBPolicy is LBRoundRobin (default) or LBLeastRequest.
	LBPolicy        LBPolicy         `json:"lbPolicy,omitempty"`
	CircuitBreakers *CircuitBreakers `json:"circuitBreakers,omitempty"`
	Outlier         *Outlier         `json:"outlier,omitempty"`
}

// Keepalive is an HTTP/2 connection's liveness check.
type Keepalive struct {
	Interval Duration `json:"interval"`
	Timeout  Duration `json:"timeout"`
}

func (k *Keepalive) valid() bool { return k.Interval > 0 && k.Timeout > 0 }

// LBPolicy chooses an endpoint for each request.
type LBPolicy string

// Load-balancing policies.
const (
	LBRoundRobin LBPolicy = "round_robin"
	// LBLeastRequest picks the better of two random endpoints by active
	// requests weighted with their latency EWMA (power of two choices).
	LBLeastRequest LBPolicy = "least_request"
)

// CircuitBreakers bound what a cluster takes on; requests beyond are
// answered 503 at once. Zero fields take Envoy's defaults.
type CircuitBreakers struct {
	MaxConnections     int `json:"maxConnections,omitempty"`
	MaxPendingRequests int `json:"maxPendingRequests,omitempty"`
	MaxRequests        int `json:"maxRequests,omitempty"`
	// RetryBudgetPercent of active requests may be retries, but at least
	// MinRetryConcurrency.
	RetryBudgetPercent  float64 `json:"retryBudgetPercent,omitempty"`
	MinRetryConcurrency int     `json:"minRetryConcurrency,omitempty"`
}

// Outlier ejects endpoints that fail in a row.
type Outlier struct {
	Consecutive5xx            int      `json:"consecutive5xx,omitempty"`
	ConsecutiveGatewayFailure int      `json:"consecutiveGatewayFailure,omitempty"`
	BaseEjectionTime          Duration `json:"baseEjectionTime,omitempty"`
	MaxEjectionPercent        int      `json:"maxEjectionPercent,omitempty"`
}

// Endpoint is one upstream address, or, with Internal, the internal
// listener of that name (Envoy's envoy_internal_address), Address then
// being the endpoint's id (host:port), which names it in pools and stats.
type Endpoint struct {
	Address  string `json:"address"`
	Internal string `json:"internal,omitempty"`
}

// Defaults applied by Normalize.
const (
	DefaultRequestTimeout = Duration(15 * time.Second)
	DefaultIdleTimeout    = Duration(60 * time.Second)
	DefaultHeaderTimeout  = Duration(10 * time.Second)
	DefaultMaxHeaderBytes = 64 << 10
	DefaultConnectTimeout = Duration(2 * time.Second)
	DefaultMaxIdleConns   = 128
	// DefaultMaxConcurrentStreams matches Envoy's hardened recommendation.
	DefaultMaxConcurrentStreams = 100
	// Envoy's circuit-breaker and retry-budget defaults.
	DefaultCircuitLimit        = 1024
	DefaultRetryBudgetPercent  = 20
	DefaultMinRetryConcurrency = 3
)

// Normalize fills zero values with defaults.
func (c *Config) Normalize() {
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.RequestTimeout == 0 {
			l.RequestTimeout = DefaultRequestTimeout
		}
		if l.IdleTimeout == 0 {
			l.IdleTimeout = DefaultIdleTimeout
		}
		if l.HeaderTimeout == 0 {
			l.HeaderTimeout = DefaultHeaderTimeout
		}
		if l.MaxHeaderBytes == 0 {
			l.MaxHeaderBytes = DefaultMaxHeaderBytes
		}
		if l.ForwardedFor == "" {
			l.ForwardedFor = ForwardedAppend
		}
		if l.Codec == "" {
			l.Codec = CodecAuto
		}
		if l.MaxConcurrentStreams == 0 {
			l.MaxConcurrentStreams = DefaultMaxConcurrentStreams
		}
	}
	for i := range c.Clusters {
		cl := &c.Clusters[i]
		if cl.ConnectTimeout == 0 {
			cl.ConnectTimeout = DefaultConnectTimeout
		}
		if cl.MaxIdleConns == 0 {
			cl.MaxIdleConns = DefaultMaxIdleConns
		}
		if cl.IdleTimeout == 0 {
			cl.IdleTimeout = DefaultIdleTimeout
		}
		if cl.LBPolicy == "" {
			cl.LBPolicy = LBRoundRobin
		}
		if cl.CircuitBreakers == nil {
			cl.CircuitBreakers = &CircuitBreakers{}
		}
		cb := cl.CircuitBreakers
		for _, f := range []*int{&cb.MaxConnections, &cb.MaxPendingRequests, &cb.MaxRequests} {
			if *f == 0 {
				*f = DefaultCircuitLimit
			}
		}
		if cb.RetryBudgetPercent == 0 {
			cb.RetryBudgetPercent = DefaultRetryBudgetPercent
		}
		if cb.MinRetryConcurrency == 0 {
			cb.MinRetryConcurrency = DefaultMinRetryConcurrency
		}
		if o := cl.Outlier; o != nil {
			if o.BaseEjectionTime == 0 {
				o.BaseEjectionTime = Duration(30 * time.Second)
			}
			if o.MaxEjectionPercent == 0 {
				o.MaxEjectionPercent = 10
			}
		}
	}
}

// Validate reports every inconsistency in the configuration.
func (c *Config) Validate() error {
	var errs []error
	clusters, http2 := map[string]bool{}, map[string]bool{}
	for i, cl := range c.Clusters {
		if cl.Name == "" || clusters[cl.Name] {
			errs = append(errs, fmt.Errorf("clusters[%d]: name %q is empty or not unique", i, cl.Name))
		}
		clusters[cl.Name] = true
		http2[cl.Name] = cl.HTTP2
		if cl.LBPolicy != "" && cl.LBPolicy != LBRoundRobin && cl.LBPolicy != LBLeastRequest {
			errs = append(errs, fmt.Errorf("clusters[%d] %q: lbPolicy must be round_robin or least_request, got %q", i, cl.Name, cl.LBPolicy))
		}
		if k := cl.HTTP2Keepalive; k != nil && (!cl.HTTP2 || !k.valid()) {
			errs = append(errs, fmt.Errorf("clusters[%d] %q: http2Keepalive needs http2 and a positive interval and timeout, got %s and %s", i, cl.Name, k.Interval.D(), k.Timeout.D()))
		}
		for j, ep := range cl.Endpoints {
			if _, _, err := net.SplitHostPort(ep.Address); err != nil {
				errs = append(errs, fmt.Errorf("clusters[%d].endpoints[%d]: %v", i, j, err))
			}
		}
	}
	internal := map[string]bool{}
	for _, l := range c.Listeners {
		internal[l.Name] = l.Internal
	}
	for i, cl := range c.Clusters {
		for j, ep := range cl.Endpoints {
			if ep.Internal != "" && !internal[ep.Internal] {
				errs = append(errs, fmt.Errorf("clusters[%d].endpoints[%d]: %q is not an internal listener of this configuration", i, j, ep.Internal))
			}
			if (ep.Internal != "") != hasInternal(cl.Endpoints) {
				errs = append(errs, fmt.Errorf("clusters[%d] %q: endpoints are all internal or none", i, cl.Name))
				break
			}
		}
	}
	if cycle := c.internalCycle(); cycle != nil {
		errs = append(errs, fmt.Errorf("internal listeners send to themselves: %s", strings.Join(cycle, " -> ")))
	}
	names := map[string]bool{}
	for i, l := range c.Listeners {
		// Listeners are kept by name: a second one of a name would
		// replace the first, whose port would then go unserved.
		if l.Name == "" || names[l.Name] {
			errs = append(errs, fmt.Errorf("listeners[%d]: name %q is empty or not unique", i, l.Name))
		}
		names[l.Name] = true
		if l.Internal {
			if l.Address != "" {
				errs = append(errs, fmt.Errorf("listeners[%d] %q: an internal listener has no address, got %q", i, l.Name, l.Address))
			}
		} else if _, _, err := net.SplitHostPort(l.Address); err != nil {
			errs = append(errs, fmt.Errorf("listeners[%d] %q: address: %v", i, l.Name, err))
		}
		if l.Direction != Inbound && l.Direction != Outbound {
			errs = append(errs, fmt.Errorf("listeners[%d] %q: direction must be inbound or outbound, got %q", i, l.Name, l.Direction))
		}
		if l.TCPCluster != "" && (!clusters[l.TCPCluster] || len(l.VirtualHosts) > 0) {
			errs = append(errs, fmt.Errorf("listeners[%d] %q: a TCP listener needs a known cluster and no virtual hosts", i, l.Name))
		}
		if l.Internal && len(l.SourceRanges) > 0 {
			errs = append(errs, fmt.Errorf("listeners[%d] %q: an internal listener's connections have no source address: sourceRanges", i, l.Name))
		}
		for _, r := range l.SourceRanges {
			if _, err := parseRange(r); err != nil {
				errs = append(errs, fmt.Errorf("listeners[%d] %q: sourceRanges: %v", i, l.Name, err))
			}
		}
		if l.TCPTunnel != "" && (l.TCPCluster == "" || !http2[l.TCPCluster]) {
			errs = append(errs, fmt.Errorf("listeners[%d] %q: tcpTunnel needs a tcpCluster with http2", i, l.Name))
		}
		if l.RBAC != nil {
			for _, p := range l.RBAC.Policies {
				for _, re := range p.PathRegexes {
					if _, err := regexp.Compile(re); err != nil {
						errs = append(errs, fmt.Errorf("listeners[%d] %q: policy %q: path regex: %v", i, l.Name, p.Name, err))
					}
				}
				if p.SourceHeader != "" && (l.TLS == nil || len(l.TLS.AllowedIDs) == 0) {
					errs = append(errs, fmt.Errorf("listeners[%d] %q: policy %q trusts header %s, which needs mutual TLS pinned to the peers allowed to set it (tls.allowedIDs)", i, l.Name, p.Name, p.SourceHeader))
				}
			}
		}
		if k := l.HTTP2Keepalive; k != nil && (l.Codec == CodecHTTP1 || !k.valid()) {
			errs = append(errs, fmt.Errorf("listeners[%d] %q: http2Keepalive needs HTTP/2 (codec auto or http2) and a positive interval and timeout, got %s and %s", i, l.Name, k.Interval.D(), k.Timeout.D()))
		}
		if l.Codec != CodecAuto && l.Codec != CodecHTTP1 && l.Codec != CodecHTTP2 {
			errs = append(errs, fmt.Errorf("listeners[%d] %q: codec must be auto, http1 or http2, got %q", i, l.Name, l.Codec))
		}
		if l.ForwardedFor != ForwardedAppend && l.ForwardedFor != ForwardedNone {
			errs = append(errs, fmt.Errorf("listeners[%d] %q: forwardedFor must be append or none, got %q", i, l.Name, l.ForwardedFor))
		}
		for j, vh := range l.VirtualHosts {
			for k, r := range vh.Routes {
				where := fmt.Sprintf("listeners[%d].virtualHosts[%d].routes[%d]", i, j, k)
				errs = append(errs, r.validate(where, clusters)...)
				if n := btoi(r.Path != "") + btoi(r.PathPrefix != "") + btoi(r.Regex != ""); n > 1 {
					errs = append(errs, fmt.Errorf("%s: set at most one of path, pathPrefix and regex", where))
				}
				if r.Segments && (r.PathPrefix == "" || strings.HasSuffix(r.PathPrefix, "/")) {
					errs = append(errs, fmt.Errorf("%s: segments needs a pathPrefix that does not end in /, got %q", where, r.PathPrefix))
				}
				if r.Regex != "" {
					if _, err := regexp.Compile("^(?:" + r.Regex + ")$"); err != nil {
						errs = append(errs, fmt.Errorf("%s: regex: %v", where, err))
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}

// internalCycle is a chain of internal listeners that leads back to its
// first (each reaching the next through a cluster), which would dial
// itself without end; nil if there is none.
func (c *Config) internalCycle() []string {
	next := map[string][]string{} // internal listener -> internal listeners its clusters reach
	reach := map[string][]string{}
	for _, cl := range c.Clusters {
		for _, ep := range cl.Endpoints {
			if ep.Internal != "" {
				reach[cl.Name] = append(reach[cl.Name], ep.Internal)
			}
		}
	}
	for _, l := range c.Listeners {
		if !l.Internal {
			continue
		}
		clusters := []string{l.TCPCluster}
		for _, vh := range l.VirtualHosts {
			for _, r := range vh.Routes {
				clusters = append(clusters, r.Cluster)
				for _, wc := range r.WeightedClusters {
					clusters = append(clusters, wc.Name)
				}
			}
		}
		for _, cl := range clusters {
			next[l.Name] = append(next[l.Name], reach[cl]...)
		}
	}
	state := map[string]int{} // 1: on the path, 2: done
	var path []string
	var visit func(string) []string
	visit = func(n string) []string {
		switch state[n] {
		case 1:
			return append(path[slices.Index(path, n):], n)
		case 2:
			return nil
		}
		state[n] = 1
		path = append(path, n)
		for _, m := range next[n] {
			if cycle := visit(m); cycle != nil {
				return cycle
			}
		}
		path = path[:len(path)-1]
		state[n] = 2
		return nil
	}
	for _, l := range c.Listeners {
		if cycle := visit(l.Name); cycle != nil {
			return cycle
		}
	}
	return nil
}

// validate checks what a route does and matches beyond its path.
func (r *Route) validate(where string, clusters map[string]bool) []error {
	var errs []error
	switch btoi(r.Cluster != "") + btoi(len(r.WeightedClusters) > 0) + btoi(r.Redirect != nil) {
	case 0:
		errs = append(errs, fmt.Errorf("%s: no cluster, weighted clusters or redirect", where))
	case 1:
	default:
		errs = append(errs, fmt.Errorf("%s: set one of cluster, weightedClusters and redirect", where))
	}
	if r.Cluster != "" && !clusters[r.Cluster] {
		errs = append(errs, fmt.Errorf("%s: unknown cluster %q", where, r.Cluster))
	}
	total := 0
	for _, wc := range r.WeightedClusters {
		if !clusters[wc.Name] {
			errs = append(errs, fmt.Errorf("%s: unknown cluster %q", where, wc.Name))
		}
		if wc.Weight < 0 {
			errs = append(errs, fmt.Errorf("%s: cluster %q has a negative weight", where, wc.Name))
		}
		total += wc.Weight
	}
	if len(r.WeightedClusters) > 0 && total <= 0 {
		errs = append(errs, fmt.Errorf("%s: the weighted clusters' weights add up to %d", where, total))
	}
	if rd := r.Redirect; rd != nil && rd.Code != 0 && !slices.Contains([]int{301, 302, 303, 307, 308}, rd.Code) {
		errs = append(errs, fmt.Errorf("%s: redirect code %d is not a redirect", where, rd.Code))
	}
	if r.Connect && (r.Cluster == "" || r.Path != "" || r.PathPrefix != "" || r.Regex != "" || r.Fault != nil || r.Retry != nil ||
		r.Timeout != 0 || r.PrefixRewrite != "" || r.PathRewrite != "" || r.HostRewrite != "" ||
		len(r.RequestHeadersToAdd)+len(r.RequestHeadersToRemove)+len(r.ResponseHeadersToAdd)+len(r.ResponseHeadersToRemove) > 0) {
		// Its bytes are carried unread: what would act on a request or a
		// response would be ignored, so it is refused.
		errs = append(errs, fmt.Errorf("%s: a connect route carries streams to one cluster: no path match, fault, retry, timeout, rewrite or header change", where))
	}
	if r.PrefixRewrite != "" && r.PathPrefix == "" {
		errs = append(errs, fmt.Errorf("%s: prefixRewrite needs a pathPrefix match", where))
	}
	for _, h := range r.Headers {
		if n := btoi(h.Exact != "") + btoi(h.Prefix != "") + btoi(h.Regex != "") + btoi(h.Present); n > 1 || h.Name == "" {
			errs = append(errs, fmt.Errorf("%s: header match %q needs a name and at most one of exact, prefix, regex, present", where, h.Name))
		}
		if h.Regex != "" {
			if _, err := regexp.Compile(h.Regex); err != nil {
				errs = append(errs, fmt.Errorf("%s: header %q regex: %v", where, h.Name, err))
			}
		}
	}
	for _, q := range r.QueryParams {
		if q.Name == "" || btoi(q.Exact != "")+btoi(q.Regex != "")+btoi(q.Present) > 1 {
			errs = append(errs, fmt.Errorf("%s: query match %q needs a name and at most one of exact, regex, present", where, q.Name))
		}
		if q.Regex != "" {
			if _, err := regexp.Compile(q.Regex); err != nil {
				errs = append(errs, fmt.Errorf("%s: query %q regex: %v", where, q.Name, err))
			}
		}
	}
	return errs
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Duration is a time.Duration that reads and writes as "1.5s" in JSON.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes the duration's string form.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string such as "250ms".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"2s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}
