package xds

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshbench/meshbench/proxy"
)

// Source delivers a proxy's configuration: a file's once, a control
// plane's on every change.
type Source interface {
	// Run calls apply with each complete configuration until ctx ends or
	// the source fails. An error from apply rejects that configuration
	// (a control plane hears why); the source goes on.
	Run(ctx context.Context, apply func(*Bundle) error) error
}

// File is a Source that reads one bundle file and delivers it once.
type File string

// Run delivers the file's bundle and waits for ctx to end.
func (f File) Run(ctx context.Context, apply func(*Bundle) error) error {
	b, err := ReadFile(string(f))
	if err != nil {
		return err
	}
	if err := apply(b); err != nil {
		return fmt.Errorf("%s: %w", f, err)
	}
	<-ctx.Done()
	return nil
}

// Static is a Source that delivers one bundle it holds (tests, and
// configuration built in-process).
type Static struct{ Bundle *Bundle }

// Run delivers the bundle and waits for ctx to end.
func (s Static) Run(ctx context.Context, apply func(*Bundle) error) error {
	if err := apply(s.Bundle); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// Logger receives a source's operational messages.
type Logger interface {
	Logf(format string, args ...any)
}

type nopLogger struct{}

func (nopLogger) Logf(string, ...any) {}

// ADS is a Source that subscribes to a control plane over the Aggregated
// Discovery Service, state of the world, to every listener, route
// configuration, cluster and load assignment for its node: requests with
// no resource names (the legacy wildcard), which go-control-plane answers
// with all of a type's resources. The first configuration is applied once
// every type has arrived; after it, each response replaces its type's
// resources in the configuration in force (a control plane sends only the
// types a change touched, clusters before listeners and routes:
// meshbench's serves its proxies from go-control-plane's ADS mode, which
// keeps Envoy's order), and the whole is applied again. A
// response is ACKed once the whole applies, or NACKed with the reason: a
// response outside the supported subset, or a whole that does not compile
// or bind (the configuration in force stays). A broken stream is
// redialled with back-off.
type ADS struct {
	// Addr is the control plane's gRPC address.
	Addr string
	// Node is the node ID the control plane knows this proxy by.
	Node string
	// Cluster is the node's cluster (optional). meshbench's control plane
	// serves a node it has no configuration for its cluster's node's (the
	// propagation benchmark's simulated clients).
	Cluster string
	// UserAgent names the client to the control plane (default
	// "meshbench-proxy").
	UserAgent string
	// Opaque clients acknowledge each response as it arrives, without
	// decoding it, and call apply with its version alone: the control-plane
	// benchmark's simulated clients, thousands to a core, stand in for
	// proxies that each have their own, and must not add their own cost
	// to what is measured.
	Opaque bool
	// TLS authenticates the control plane (and this proxy to it); nil is
	// plaintext.
	TLS *tls.Config
	// Mark, when set, is the SO_MARK of the connection to the control
	// plane: a sidecar's own traffic, which interception lets pass.
	Mark int
	Log  Logger
}

// adsTypes are the types an ADS source subscribes to, in the order Envoy
// requests them.
var adsTypes = []string{ClusterType, EndpointType, ListenerType, RouteType}

// Run subscribes until ctx ends.
func (a *ADS) Run(ctx context.Context, apply func(*Bundle) error) error {
	if a.Log == nil {
		a.Log = nopLogger{}
	}
	creds := insecure.NewCredentials()
	if a.TLS != nil {
		creds = credentials.NewTLS(a.TLS)
	}
	dialer := proxy.MarkedDialer(a.Mark, 5*time.Second)
	conn, err := grpc.NewClient(a.Addr, grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		return fmt.Errorf("control plane %s: %w", a.Addr, err)
	}
	defer conn.Close()
	client := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	var backoff time.Duration
	for {
		err := a.stream(ctx, client, apply)
		if ctx.Err() != nil {
			return nil
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
		a.Log.Logf("ADS stream to %s: %v; again in %s", a.Addr, err, backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
	}
}

// typeState is what one type's last response said.
type typeState struct {
	version, nonce string
	resources      *Bundle // this type's resources alone
	problems       []string
}

func (a *ADS) stream(ctx context.Context, client discoveryv3.AggregatedDiscoveryServiceClient, apply func(*Bundle) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	node := &corev3.Node{Id: a.Node, Cluster: a.Cluster, UserAgentName: cmp.Or(a.UserAgent, "meshbench-proxy")}
	for i, typ := range adsTypes {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typ}
		if i == 0 {
			req.Node = node
		}
		if err := s.Send(req); err != nil {
			return err
		}
	}
	// applied is the response of each type in force; pending, those
	// received since the last configuration applied.
	applied := map[string]*typeState{}
	pending := map[string]*typeState{}
	for {
		resp, err := s.Recv()
		if err != nil {
			return err
		}
		typ := resp.GetTypeUrl()
		if !slices.Contains(adsTypes, typ) {
			// Not subscribed to: reject so the control plane sees it.
			if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce(),
				ErrorDetail: &statuspb.Status{Message: "meshbench's proxy does not subscribe to " + typ}}); err != nil {
				return err
			}
			continue
		}
		st := &typeState{version: resp.GetVersionInfo(), nonce: resp.GetNonce(), resources: &Bundle{}}
		if a.Opaque {
			if err := apply(&Bundle{VersionInfo: st.version}); err != nil {
				return err
			}
			if err := a.reply(s, typ, st, nil, ""); err != nil {
				return err
			}
			continue
		}
		for i, r := range resp.GetResources() {
			st.problems = append(st.problems, st.resources.check(r, fmt.Sprintf("%s resources[%d]", shortType(typ), i))...)
		}
		if len(st.problems) > 0 {
			// This response alone is bad: reject it at once.
			msg := "outside meshbench's supported xDS subset:\n  " + strings.Join(st.problems, "\n  ")
			a.Log.Logf("NACK %s version %s: %s", shortType(typ), st.version, msg)
			if err := a.reply(s, typ, st, applied[typ], msg); err != nil {
				return err
			}
			continue
		}
		pending[typ] = st
		// The first configuration waits for every type; after it, each
		// response replaces its type's resources in the one in force.
		whole := &Bundle{VersionInfo: st.version}
		complete := true
		for _, t := range adsTypes {
			r := cmp.Or(pending[t], applied[t])
			if r == nil {
				complete = false
				break
			}
			whole.Listeners = append(whole.Listeners, r.resources.Listeners...)
			whole.Routes = append(whole.Routes, r.resources.Routes...)
			whole.Clusters = append(whole.Clusters, r.resources.Clusters...)
			whole.Endpoints = append(whole.Endpoints, r.resources.Endpoints...)
		}
		if !complete {
			continue
		}
		msg := ""
		if err := apply(whole); err != nil {
			msg = err.Error()
			a.Log.Logf("NACK version %s: %s", whole.VersionInfo, msg)
		}
		for _, t := range adsTypes {
			p := pending[t]
			if p == nil {
				continue
			}
			if err := a.reply(s, t, p, applied[t], msg); err != nil {
				return err
			}
			if msg == "" {
				applied[t] = p
			}
		}
		pending = map[string]*typeState{}
	}
}

// reply ACKs (msg "") or NACKs a response; a NACK names the version in
// force (inForce's, if any).
func (a *ADS) reply(s discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, typ string, st, inForce *typeState, msg string) error {
	req := &discoveryv3.DiscoveryRequest{TypeUrl: typ, ResponseNonce: st.nonce, VersionInfo: st.version}
	if msg != "" {
		req.VersionInfo = ""
		if inForce != nil {
			req.VersionInfo = inForce.version
		}
		req.ErrorDetail = &statuspb.Status{Message: msg}
	}
	return s.Send(req)
}

func shortType(typeURL string) string {
	return typeURL[strings.LastIndex(typeURL, ".")+1:]
}

// ErrNoSource is returned when neither a file nor a control plane is named.
var ErrNoSource = errors.New("no configuration source: give --xds FILE or --ads ADDRESS")

// Updater is what a Source's bundles are applied to: proxy.Proxy.
type Updater interface {
	Update(cfg proxy.Config, version string, source json.RawMessage) error
}

// Apply returns the function that compiles a Source's bundles for node
// and applies them to p, with the bundle as /config_dump's source.
func Apply(p Updater, node string) func(*Bundle) error {
	return func(b *Bundle) error {
		cfg, err := Translate(b, node, "")
		if err != nil {
			return err
		}
		raw, err := b.Marshal()
		if err != nil {
			return err
		}
		return p.Update(*cfg, b.VersionInfo, raw)
	}
}
