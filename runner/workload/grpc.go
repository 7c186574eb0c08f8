package workload

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"fortio.org/fortio/fgrpc"
	"fortio.org/fortio/periodic"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// The gRPC workload is fortio's ping service (fgrpc's PingServer proto):
// the load client sends PingMessages with a payload of the scenario's
// request size, and each service answers with one of its payload size
// after its service time and its calls, which are pings too.

// pingServer is fortio's ping service with meshbench's server knobs.
type pingServer struct {
	c       *caller
	payload string
}

// Ping answers after the service time and the calls; a failed call fails
// the request (UNAVAILABLE), as an HTTP server answers 502.
func (p *pingServer) Ping(ctx context.Context, in *fgrpc.PingMessage) (*fgrpc.PingMessage, error) {
	if err := p.c.serve(ctx); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &fgrpc.PingMessage{Seq: in.GetSeq(), Ts: in.GetTs(), Payload: p.payload}, nil
}

// GRPCServer is a gRPC server: grpc-go's own, or its xDS server.
type GRPCServer interface {
	grpc.ServiceRegistrar
	Serve(net.Listener) error
	GracefulStop()
	Stop()
}

// pingServiceDesc is fgrpc's PingServer service, whose own registration
// takes a *grpc.Server only (grpc-go's xDS server is another type).
var pingServiceDesc = grpc.ServiceDesc{
	ServiceName: "fgrpc.PingServer",
	HandlerType: (*fgrpc.PingServerServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Ping", Handler: pingHandler}},
	Metadata:    "ping.proto",
}

func pingHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(fgrpc.PingMessage)
	if err := dec(in); err != nil {
		return nil, err
	}
	ping := func(ctx context.Context, req any) (any, error) {
		return srv.(fgrpc.PingServerServer).Ping(ctx, req.(*fgrpc.PingMessage))
	}
	if interceptor == nil {
		return ping(ctx, in)
	}
	return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/fgrpc.PingServer/Ping"}, ping)
}

// serveGRPC serves the ping service and gRPC health (SERVING) on ln until
// ctx ends, then stops gracefully for up to drainTimeout.
func serveGRPC(ctx context.Context, ln net.Listener, c *caller, o ServerOptions) error {
	var srv GRPCServer = grpc.NewServer()
	if o.GRPCServer != nil {
		var err error
		if srv, err = o.GRPCServer(); err != nil {
			ln.Close()
			return err
		}
	}
	srv.RegisterService(&pingServiceDesc, &pingServer{c: c, payload: strings.Repeat("m", o.PayloadSize)})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(drainTimeout):
		srv.Stop()
	}
	return nil
}

// dialGRPC opens a call's connection: o.GRPCDial's, or cleartext to the
// call's Dial address with its authority.
func dialGRPC(o ServerOptions, call Call) (*grpc.ClientConn, error) {
	if o.GRPCDial != nil {
		return o.GRPCDial(call)
	}
	dial := call.Dial
	if dial == "" {
		dial = call.Authority
	}
	return grpc.NewClient("passthrough:///"+dial,
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(call.Authority))
}

// pingCall sends an empty ping over conn.
func pingCall(conn *grpc.ClientConn) func(context.Context) error {
	client := fgrpc.NewPingServerClient(conn)
	req := &fgrpc.PingMessage{}
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		_, err := client.Ping(ctx, req)
		return err
	}
}

// GRPCResult is a gRPC load run's result: fortio's runner figures and the
// count of each gRPC status code ("OK" for success).
type GRPCResult struct {
	periodic.RunnerResults
	RetCodes map[string]int64
}

// pinger is one load connection: fortio's periodic runner calls Run at the
// connection's share of the rate.
type pinger struct {
	client  fgrpc.PingServerClient
	req     *fgrpc.PingMessage
	timeout time.Duration
	codes   map[string]int64
}

func (p *pinger) Run(ctx context.Context, _ periodic.ThreadID) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	_, err := p.client.Ping(ctx, p.req)
	code := status.Code(err).String()
	p.codes[code]++
	return err == nil, code
}

// runGRPC drives fortio's periodic runner with one gRPC connection per
// fortio connection ("thread"), each pinging at its share of the rate.
func runGRPC(ctx context.Context, o LoadOptions, ro periodic.RunnerOptions) (*GRPCResult, error) {
	ro.RunType = "GRPC Ping"
	r := periodic.NewPeriodicRunner(&ro)
	defer r.Options().Abort()
	n := r.Options().NumThreads
	pingers := make([]pinger, n)
	var conns []*grpc.ClientConn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	payload := strings.Repeat("m", o.RequestSize)
	for i := range n {
		conn, err := o.grpcDial()
		if err != nil {
			return nil, fmt.Errorf("grpc connection %d: %w", i, err)
		}
		conns = append(conns, conn)
		pingers[i] = pinger{client: fgrpc.NewPingServerClient(conn), timeout: requestTimeout,
			req: &fgrpc.PingMessage{Payload: payload, Seq: int64(i)}, codes: map[string]int64{}}
		r.Options().Runners[i] = &pingers[i]
	}
	// Connect every connection before the clock starts, as fortio's HTTP
	// and TCP runners do with their first request; a failure there is
	// logged, and the run counts the failures that follow.
	out := r.Options().Out // set by the runner when ro.Out is nil
	for i := range pingers {
		if ok, code := pingers[i].Run(ctx, periodic.ThreadID(i)); !ok {
			fmt.Fprintf(out, "grpc connection %d: first ping: %s\n", i, code)
		}
		clear(pingers[i].codes)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res := &GRPCResult{RunnerResults: r.Run(), RetCodes: map[string]int64{}}
	for i := range pingers {
		for k, v := range pingers[i].codes {
			res.RetCodes[k] += v
		}
	}
	r.Options().ReleaseRunners()
	for k, v := range res.RetCodes {
		fmt.Fprintf(out, "grpc %s : %d\n", k, v)
	}
	return res, nil
}

// grpcDial is o.GRPCDial, or a cleartext connection to the URL's host
// with o.Host as the authority.
func (o LoadOptions) grpcDial() (*grpc.ClientConn, error) {
	if o.GRPCDial != nil {
		return o.GRPCDial()
	}
	addr, err := hostPort(o.URL)
	if err != nil {
		return nil, err
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if o.Host != "" {
		opts = append(opts, grpc.WithAuthority(o.Host))
	}
	return grpc.NewClient("passthrough:///"+addr, opts...)
}

// errNoPort says a load URL names no port.
var errNoPort = errors.New("the URL must name host:port")
