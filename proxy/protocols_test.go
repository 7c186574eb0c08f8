package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

type testService struct {
	testpb.UnimplementedTestServiceServer
}

func (testService) UnaryCall(_ context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: make([]byte, req.GetResponseSize())}}, nil
}

// FullDuplexCall answers each message as it arrives: a proxy that buffered
// the stream would deadlock the test.
func (testService) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		size := int32(1)
		if ps := req.GetResponseParameters(); len(ps) > 0 {
			size = ps[0].GetSize()
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, size)}}); err != nil {
			return err
		}
	}
}

func grpcUpstream(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	testpb.RegisterTestServiceServer(s, testService{})
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String()
}

// TestGRPCThroughProxy sends unary and bidirectional streaming gRPC calls
// through the proxy (h2c downstream, HTTP/2 upstream), and a gRPC fault.
func TestGRPCThroughProxy(t *testing.T) {
	up := grpcUpstream(t)
	_, addr := startProxy(t, Config{
		Listeners: []Listener{{Name: "l", Direction: Outbound, VirtualHosts: []VirtualHost{{Name: "vh", Domains: []string{"*"}, Routes: []Route{
			{PathPrefix: "/grpc.testing.TestService/EmptyCall", Cluster: "c", Fault: &Fault{AbortPercent: 100, AbortGRPCStatus: int(codes.Unavailable)}},
			{PathPrefix: "/", Cluster: "c"},
		}}}}},
		Clusters: []Cluster{{Name: "c", HTTP2: true, Endpoints: []Endpoint{{Address: up}}}},
	})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := testpb.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, err := client.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 2048})
	if err != nil || len(resp.GetPayload().GetBody()) != 2048 {
		t.Fatalf("unary call: %v (%d bytes)", err, len(resp.GetPayload().GetBody()))
	}
	stream, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: int32(i * 10)}}}); err != nil {
			t.Fatal(err)
		}
		got, err := stream.Recv()
		if err != nil || len(got.GetPayload().GetBody()) != i*10 {
			t.Fatalf("stream message %d: %v", i, err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Errorf("end of stream: %v, want EOF (trailers with status OK)", err)
	}
	_, err = client.EmptyCall(ctx, &testpb.Empty{})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("gRPC fault: %v, want Unavailable", err)
	}
}

// TestTCPProxy forwards an opaque protocol both ways, with half-close.
func TestTCPProxy(t *testing.T) {
	upstream := serveTCP(t, func(c net.Conn) {
		b, _ := io.ReadAll(c) // until the client half-closes
		io.WriteString(c, strings.ToUpper(string(b)))
	})
	p, addr := startProxy(t, Config{
		Listeners: []Listener{{Name: "tcp", Direction: Outbound, TCPCluster: "c"}},
		Clusters:  []Cluster{{Name: "c", Endpoints: []Endpoint{{Address: upstream}}}},
	})
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "opaque bytes\x00\x01")
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != "OPAQUE BYTES\x00\x01" {
			t.Fatalf("TCP round trip %d: %q %v", i, got, err)
		}
	}
	if st := p.Stats().Listeners["tcp"]; st.Connections != 3 || st.Responses2xx != 3 {
		t.Errorf("stats %+v", st)
	}
}

// TestTCPIdleTimeoutCountsBothDirections: a one-way stream longer than the
// idle timeout survives; a silent connection is closed.
func TestTCPIdleTimeoutCountsBothDirections(t *testing.T) {
	upstream := serveTCP(t, func(c net.Conn) {
		b := make([]byte, 1)
		if _, err := c.Read(b); err != nil || b[0] != 's' {
			return // silent client: wait for the proxy to close
		}
		for i := 0; i < 30; i++ { // stream for 3s, one way
			io.WriteString(c, "x")
			time.Sleep(100 * time.Millisecond)
		}
	})
	_, addr := startProxy(t, Config{
		Listeners: []Listener{{Name: "tcp", Direction: Outbound, TCPCluster: "c", IdleTimeout: Duration(time.Second)}},
		Clusters:  []Cluster{{Name: "c", Endpoints: []Endpoint{{Address: upstream}}}},
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "s")
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, _ := io.ReadAll(c)
	c.Close()
	// A write every 100ms against a 1s idle timeout: only a stall of 900ms
	// between two of them could close the stream early.
	if string(got) != strings.Repeat("x", 30) {
		t.Errorf("one-way stream through the TCP proxy got %q, want all 30 bytes", got)
	}
	// The proxy's idle clock starts when it accepts, which may be before
	// Dial returns: the lower bound is timed from before the Dial.
	start := time.Now()
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = silent.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() || time.Since(start) < time.Second {
		t.Errorf("silent connection: %v after %s, want it closed by the proxy after the 1s idle timeout", err, time.Since(start))
	}
}
