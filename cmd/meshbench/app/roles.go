package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	flog "fortio.org/log"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/meshbench/meshbench/cmd/internal/role"
	"github.com/meshbench/meshbench/proxy/proxyless"
	"github.com/meshbench/meshbench/proxy/xds"
	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/runner/workload"
)

// The process roles below are started by the platforms, not by people:
// they are hidden from the main help.

func newWorkloadCommand(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:    "workload",
		Short:  "Run a test application role (started by the platform)",
		Hidden: true,
		Args:   argsCheck(cobra.NoArgs),
	}
	cmd.AddCommand(newServerRole(s), newClientRole(s), newProbeRole(s), newStressRole(), newInterposeRole(), newHTTPFaultsRole())
	return cmd
}

func newStressRole() *cobra.Command {
	var o workload.StressOptions
	cmd := &cobra.Command{
		Use:   "stress",
		Short: "Burn CPU and hold memory until stopped (a StressChaos's stressor)",
		Args:  argsCheck(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case o.CPUWorkers < 0:
				return badInput(fmt.Errorf("flag --cpu-workers: must not be negative, got %d", o.CPUWorkers))
			case o.CPUWorkers > 0 && (o.CPULoad < 1 || o.CPULoad > 100):
				return badInput(fmt.Errorf("flag --cpu-load: must be between 1 and 100, got %d", o.CPULoad))
			case o.MemoryBytes < 0:
				return badInput(fmt.Errorf("flag --memory: must not be negative, got %d", o.MemoryBytes))
			}
			return workload.Stress(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.CPUWorkers, "cpu-workers", 0, "CPU workers")
	f.IntVar(&o.CPULoad, "cpu-load", 100, "percent of each 100 ms each CPU worker is busy")
	f.Int64Var(&o.MemoryBytes, "memory", 0, "bytes of memory to hold (every page written)")
	return cmd
}

func newInterposeRole() *cobra.Command {
	var o workload.InterposeOptions
	var proxies []string
	cmd := &cobra.Command{
		Use:   "interpose",
		Short: "Run toxiproxy's proxies and API (the local platform's network-fault interposer)",
		Args:  argsCheck(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.API == "" {
				return badInput(errors.New("flag --api: the API's address is required"))
			}
			for _, p := range proxies {
				f := strings.Split(p, "=")
				if len(f) != 3 || f[0] == "" || f[1] == "" || f[2] == "" {
					return badInput(fmt.Errorf("flag --proxy: want name=listen=upstream, got %q", p))
				}
				o.Proxies = append(o.Proxies, workload.InterposeProxy{Name: f[0], Listen: f[1], Upstream: f[2]})
			}
			return workload.Interpose(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.API, "api", "", "address of toxiproxy's HTTP API")
	f.StringArrayVar(&proxies, "proxy", nil, "a proxy, as name=listen=upstream (repeatable)")
	return cmd
}

func newHTTPFaultsRole() *cobra.Command {
	var o workload.HTTPFaultOptions
	cmd := &cobra.Command{
		Use:   "http-faults",
		Short: "Serve an HTTP/1.1 proxy in front of an application, applying HTTPChaos rules (the local platform's HTTP interposer)",
		Args:  argsCheck(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			for flag, v := range map[string]string{"api": o.API, "listen": o.Listen, "upstream": o.Upstream} {
				if v == "" {
					return badInput(fmt.Errorf("flag --%s: required", flag))
				}
			}
			return workload.HTTPFaults(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.API, "api", "", "address of the rules' API")
	f.StringVar(&o.Listen, "listen", "", "address the proxy listens on")
	f.StringVar(&o.Upstream, "upstream", "", "the application's address")
	f.IntVar(&o.Mark, "mark", 0, "SO_MARK of the connections to the application")
	return cmd
}

func quietFortio() {
	flog.SetLogLevelQuiet(flog.Warning)
	flog.SetOutput(os.Stderr)
}

// startProxyless returns the proxyless library of the workload, or nil
// when f names no source.
func startProxyless(ctx context.Context, f *role.MeshFlags, logger xds.Logger) (*proxyless.Mesh, error) {
	src, _, err := f.Source(logger)
	if src == nil || err != nil {
		return nil, err
	}
	m, err := proxyless.Start(ctx, src, f.Node, proxyless.DefaultStartTimeout)
	if err != nil && f.Bundle != "" {
		return nil, badInput(fmt.Errorf("%s: %w", f.Bundle, err))
	}
	return m, err
}

// grpcXDSEnv is the variable grpc-go reads its xDS bootstrap file's name
// from, once, when it starts (before main).
const grpcXDSEnv = "GRPC_XDS_BOOTSTRAP"

// useGRPCBootstrap makes grpc-go in this process read its xDS bootstrap
// from path, as any grpc-go application is bootstrapped: grpc-go reads
// GRPC_XDS_BOOTSTRAP at start, so unless it already names path the
// process re-executes itself (same PID, namespace and CPU pinning) with it
// set. It returns only when the variable is in force.
func useGRPCBootstrap(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if _, err := os.Stat(abs); err != nil {
		return badInput(fmt.Errorf("flag --grpc-xds-bootstrap: %w", err))
	}
	if os.Getenv(grpcXDSEnv) == abs {
		return nil
	}
	if os.Getenv(reexecEnv) != "" {
		// grpc-go would read another file than asked: never loop.
		return fmt.Errorf("flag --grpc-xds-bootstrap: %s is %q after re-executing, want %q", grpcXDSEnv, os.Getenv(grpcXDSEnv), abs)
	}
	return fmt.Errorf("re-execute with %s: %w", grpcXDSEnv, syscall.Exec("/proc/self/exe", os.Args, bootstrapEnv(os.Environ(), abs)))
}

// reexecEnv marks a process that re-executed itself for its bootstrap.
const reexecEnv = "MESHBENCH_GRPC_REEXEC"

// bootstrapEnv is env with GRPC_XDS_BOOTSTRAP set to path: any earlier
// setting removed (the first of a duplicated variable wins), and the
// re-exec marker added.
func bootstrapEnv(env []string, path string) []string {
	out := make([]string, 0, len(env)+2)
	for _, kv := range env {
		if !strings.HasPrefix(kv, grpcXDSEnv+"=") && !strings.HasPrefix(kv, reexecEnv+"=") {
			out = append(out, kv)
		}
	}
	return append(out, grpcXDSEnv+"="+path, reexecEnv+"=1")
}

// grpcXDSFlags are the proxyless-grpc mode's: grpc-go's own xDS client
// and server instead of meshbench's library.
type grpcXDSFlags struct {
	bootstrap, ready string
}

func (f *grpcXDSFlags) bind(fs *pflag.FlagSet, server bool) {
	fs.StringVar(&f.bootstrap, "grpc-xds-bootstrap", "", "proxyless-grpc: grpc-go's own xDS client"+map[bool]string{true: " and server", false: ""}[server]+", bootstrapped by this file (protocol grpc)")
	if server {
		fs.StringVar(&f.ready, "ready-listen", "", "proxyless-grpc: answer GET /ready here once the xDS server serves")
	}
}

// check refuses the flags with a meshbench library source or another
// protocol, and makes grpc-go read the bootstrap.
func (f *grpcXDSFlags) check(mf *role.MeshFlags, protocol string) error {
	if f.bootstrap == "" {
		if f.ready != "" {
			return badInput(errors.New("flag --ready-listen: only with --grpc-xds-bootstrap"))
		}
		return nil
	}
	if mf.Bundle != "" || mf.ADS != "" {
		return badInput(errors.New("flag --grpc-xds-bootstrap: grpc-go takes its configuration from the bootstrap's control plane; drop --xds and --ads"))
	}
	if protocol != "grpc" {
		return badInput(fmt.Errorf("flag --grpc-xds-bootstrap: grpc-go's xDS client carries --protocol grpc, not %s", protocol))
	}
	return useGRPCBootstrap(f.bootstrap)
}

func newServerRole(s Streams) *cobra.Command {
	o := workload.ServerOptions{}
	var mf role.MeshFlags
	var gx grpcXDSFlags
	var calls []string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Serve fortio's echo handler, calling other services first",
		Args:  argsCheck(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			quietFortio()
			for _, v := range calls {
				c, err := workload.ParseCall(v)
				if err != nil {
					return badInput(fmt.Errorf("flag --call: %w", err))
				}
				o.Calls = append(o.Calls, c)
			}
			if o.FaultAPI != "" && (o.Protocol == "grpc" || o.Protocol == "tcp") {
				return badInput(fmt.Errorf("flag --http-faults-api: a %s server applies no HTTP faults", o.Protocol))
			}
			// Before anything starts: it may re-execute the process.
			if err := gx.check(&mf, o.Protocol); err != nil {
				return err
			}
			m, err := startProxyless(cmd.Context(), &mf, role.NewLogger(s.ErrOut, "proxyless: "))
			if err != nil {
				return err
			}
			if m != nil && o.Protocol != "http" && o.Protocol != "" {
				return badInput(fmt.Errorf("flag --protocol: the proxyless library carries http only, not %s", o.Protocol))
			}
			if m != nil {
				if len(o.Calls) > 0 {
					if o.Transport, err = m.Transport(); err != nil {
						return badInput(err)
					}
				}
				if o.Listener, err = m.Listen(cmd.Context()); err != nil {
					return err
				}
				o.Guard = m.Guard
			}
			o.Stats = s.Out
			if gx.bootstrap == "" {
				return workload.Serve(cmd.Context(), o)
			}
			var serving atomic.Bool
			o.GRPCServer = workload.XDSServer(&serving)
			o.GRPCDial = func(c workload.Call) (*grpc.ClientConn, error) { return workload.XDSDial(c.Authority) }
			group, ctx := errgroup.WithContext(cmd.Context())
			group.Go(func() error { return workload.Serve(ctx, o) })
			if gx.ready != "" {
				group.Go(func() error { return workload.ServeReady(ctx, gx.ready, &serving) })
			}
			return group.Wait()
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&calls, "call", nil, "service to call for every request, in parallel with the others: AUTHORITY[=DIAL_ADDRESS] (repeatable)")
	mf.Bind(f, "proxyless: serve the inbound listener (mTLS, RBAC) instead of --listen, and make the calls,", "")
	f.StringVar(&o.Listen, "listen", ":8080", "address to serve on")
	f.StringVar(&o.Name, "name", "", "the service's name, sent in every answer's "+workload.ServedByHeader+" header")
	f.IntVar(&o.PayloadSize, "payload-size", 1024, "response body size in bytes")
	f.DurationVar(&o.Delay, "delay", 0, "service time added to every request")
	f.IntVar(&o.Status, "status", 0, "response status code (default 200)")
	f.IntVar(&o.EchoSize, "echo-size", 0, "tcp: the load's payload size, so that each payload echoed counts as one request (0: each read does)")
	f.StringVar(&o.Protocol, "protocol", "http", "what to serve: http (HTTP/1.1), http2 (HTTP/1.1 and h2c, calling over h2c), grpc (fortio's ping service), tcp (echo)")
	f.StringVar(&o.FaultAPI, "http-faults-api", "", "take HTTPChaos rules at this address (the API of workload http-faults) and apply them to the requests served, after the proxyless library's mTLS and RBAC (http and http2)")
	gx.bind(f, true)
	return cmd
}

func newClientRole(s Streams) *cobra.Command {
	o := workload.LoadOptions{}
	var mf role.MeshFlags
	var gx grpcXDSFlags
	var out string
	cmd := &cobra.Command{
		Use:   "client",
		Short: "Drive load with fortio and write its result",
		Args:  argsCheck(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			quietFortio()
			if o.URL == "" || out == "" {
				return badInput(errors.New("--url and --out are required"))
			}
			o.Log = s.ErrOut
			// Before anything starts: it may re-execute the process.
			if err := gx.check(&mf, o.Protocol); err != nil {
				return err
			}
			m, err := startProxyless(cmd.Context(), &mf, role.NewLogger(s.ErrOut, "proxyless: "))
			if err != nil {
				return err
			}
			if m != nil && o.Protocol != "http" && o.Protocol != "" {
				return badInput(fmt.Errorf("flag --protocol: the proxyless library carries http only, not %s", o.Protocol))
			}
			if m != nil {
				if _, err := m.Transport(); err != nil {
					return badInput(err)
				}
				o.Transport = m.Transport
			}
			if gx.bootstrap != "" {
				if o.Host == "" {
					return badInput(errors.New("flag --host: grpc-go's xDS client needs the service's authority (xds:///HOST)"))
				}
				o.GRPCDial = func() (*grpc.ClientConn, error) { return workload.XDSDial(o.Host) }
			}
			res, err := workload.RunLoad(cmd.Context(), o, s.Out)
			if err != nil {
				return err
			}
			if err := results.WriteJSON(results.COPath(out), res.CO); err != nil {
				return err
			}
			if err := results.WriteJSON(results.LatencyPath(out), res.Latency); err != nil {
				return err
			}
			if err := results.WriteJSON(results.SeriesPath(out), res.Series); err != nil {
				return err
			}
			return results.WriteJSON(out, res.Fortio)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.URL, "url", "", "URL to send requests to")
	f.StringVar(&o.Host, "host", "", "Host header (authority) to send")
	f.Float64Var(&o.QPS, "qps", 1000, "requests per second")
	f.IntVar(&o.Connections, "connections", 8, "concurrent connections")
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "measured duration")
	f.DurationVar(&o.Warmup, "warmup", 2*time.Second, "warm-up duration, excluded from the result")
	f.IntVar(&o.RequestSize, "request-size", 0, "request body size in bytes (0 sends GET); the ping or echo payload for grpc and tcp")
	f.StringVar(&o.Protocol, "protocol", "http", "load protocol: http, http2 (cleartext, prior knowledge), grpc (fortio's ping), tcp (echo)")
	f.StringVar(&out, "out", "", "file to write fortio's JSON result to")
	mf.Bind(f, "proxyless: route requests in-process", "")
	gx.bind(f, false)
	return cmd
}

func newProbeRole(s Streams) *cobra.Command {
	o := workload.ProbeOptions{}
	var mf role.MeshFlags
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Send --count requests one after another (or one each --every) and print what came back (JSON)",
		Args:  argsCheck(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.URL == "" {
				return badInput(errors.New("flag --url: required"))
			}
			if o.Count < 1 || o.Count > workload.MaxProbeRequests {
				return badInput(fmt.Errorf("flag --count: must be between 1 and %d, got %d", workload.MaxProbeRequests, o.Count))
			}
			if o.Every < 0 || (o.Every > 0) != (o.For > 0) || o.For > workload.MaxProbeFor {
				return badInput(fmt.Errorf("flags --every and --for: both or neither, positive, --for at most %s (got %s, %s)", workload.MaxProbeFor, o.Every, o.For))
			}
			m, err := startProxyless(cmd.Context(), &mf, role.NewLogger(s.ErrOut, "proxyless: "))
			if err != nil {
				return err
			}
			if m != nil {
				if o.Transport, err = m.Transport(); err != nil {
					return badInput(err)
				}
			}
			if o.Every > 0 {
				enc := json.NewEncoder(s.Out)
				return workload.ProbeEvery(cmd.Context(), o, func(r workload.Reading) { _ = enc.Encode(r) })
			}
			res, err := workload.Probe(cmd.Context(), o)
			if err != nil {
				return err
			}
			return json.NewEncoder(s.Out).Encode(res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.URL, "url", "", "URL to send requests to")
	f.StringVar(&o.Host, "host", "", "Host header (authority) to send")
	f.StringVar(&o.Path, "path", "/", "request path")
	f.StringVar(&o.Method, "method", http.MethodGet, "request method")
	f.IntVar(&o.Count, "count", 100, "number of requests")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Second, "timeout of each request")
	f.DurationVar(&o.Every, "every", 0, "send one request each interval (with --for) instead of --count back to back, printing each reading (JSON lines)")
	f.DurationVar(&o.For, "for", 0, "how long to send one request each --every")
	mf.Bind(f, "proxyless: route requests in-process", "")
	return cmd
}
