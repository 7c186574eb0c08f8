package app

import (
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	flog "fortio.org/log"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/meshbench/meshbench/proxy"
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
	cmd.AddCommand(newServerRole(s), newClientRole(s))
	return cmd
}

func quietFortio() {
	flog.SetLogLevelQuiet(flog.Warning)
	flog.SetOutput(os.Stderr)
}

func newServerRole(s Streams) *cobra.Command {
	o := workload.ServerOptions{}
	var bundlePath string
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
			if bundlePath != "" {
				b, err := xds.ReadFile(bundlePath)
				if err != nil {
					return badInput(err)
				}
				if len(o.Calls) > 0 {
					if o.Transport, err = proxyless.NewTransport(b); err != nil {
						return badInput(fmt.Errorf("%s: %w", bundlePath, err))
					}
				}
				if o.Listener, err = proxyless.Listen(cmd.Context(), b); err != nil {
					return err
				}
			}
			o.Stats = s.Out
			return workload.Serve(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&calls, "call", nil, "service to call for every request, in parallel with the others: AUTHORITY[=DIAL_ADDRESS] (repeatable)")
	f.StringVar(&bundlePath, "xds", "", "serve the bundle's inbound listener (proxyless mTLS) instead of --listen")
	f.StringVar(&o.Listen, "listen", ":8080", "address to serve on")
	f.IntVar(&o.PayloadSize, "payload-size", 1024, "response body size in bytes")
	f.DurationVar(&o.Delay, "delay", 0, "service time added to every request")
	f.IntVar(&o.Status, "status", 0, "response status code (default 200)")
	return cmd
}

func newClientRole(s Streams) *cobra.Command {
	o := workload.LoadOptions{}
	var out, bundlePath string
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
			if bundlePath != "" {
				b, err := xds.ReadFile(bundlePath)
				if err != nil {
					return badInput(err)
				}
				if _, err := proxyless.NewTransport(b); err != nil {
					return badInput(fmt.Errorf("%s: %w", bundlePath, err))
				}
				o.Transport = func() (http.RoundTripper, error) { return proxyless.NewTransport(b) }
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
	f.IntVar(&o.RequestSize, "request-size", 0, "request body size in bytes (0 sends GET)")
	f.StringVar(&out, "out", "", "file to write fortio's JSON result to")
	f.StringVar(&bundlePath, "xds", "", "route requests in-process with this xDS bundle (proxyless mode)")
	return cmd
}

func newProxyCommand(s Streams) *cobra.Command {
	var bundlePath, ads, node, admin, mode string
	var adsMark int
	var tf tlsFlags
	cmd := &cobra.Command{
		Use:    "proxy",
		Short:  "Run meshbench's proxy with an xDS bundle or a control plane (started by the platform)",
		Hidden: true,
		Args:   argsCheck(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := stdLogger{log.New(s.ErrOut, "proxy: ", log.LstdFlags|log.Lmicroseconds)}
			opts := []proxy.Option{proxy.WithLogger(logger), proxy.WithAccessLog(s.Out)}
			switch {
			case bundlePath != "" && ads != "":
				return badInput(errors.New("flags --xds and --ads: give one configuration source"))
			case bundlePath != "":
				// A bad bundle stops the proxy at start, with the field named.
				b, err := xds.ReadFile(bundlePath)
				if err != nil {
					return badInput(err)
				}
				cfg, err := xds.Translate(b, node, admin)
				if err != nil {
					return badInput(fmt.Errorf("%s: %w", bundlePath, err))
				}
				cfg.Mode = mode
				source, err := b.Marshal()
				if err != nil {
					return err
				}
				p, err := proxy.New(*cfg, append(opts, proxy.WithConfigSource(source), proxy.WithVersion(b.VersionInfo))...)
				if err != nil {
					return badInput(err)
				}
				return p.Run(cmd.Context())
			case ads != "":
				tlsConf, err := tf.client("ads-")
				if err != nil {
					return err
				}
				p, err := proxy.New(proxy.Config{Node: node, Admin: admin, Mode: mode}, append(opts, proxy.AwaitConfig())...)
				if err != nil {
					return badInput(err)
				}
				src := &xds.ADS{Addr: ads, Node: node, TLS: tlsConf, Mark: adsMark, Log: logger}
				group, ctx := errgroup.WithContext(cmd.Context())
				group.Go(func() error { return p.Run(ctx) })
				group.Go(func() error { return src.Run(ctx, xds.Apply(p, node)) })
				return group.Wait()
			}
			return badInput(xds.ErrNoSource)
		},
	}
	f := cmd.Flags()
	f.StringVar(&bundlePath, "xds", "", "xDS bundle (a DiscoveryResponse in JSON or YAML) with the proxy's resources")
	f.StringVar(&ads, "ads", "", "control plane address: take the configuration over ADS, and every change to it")
	f.StringVar(&node, "node", "proxy", "the proxy's node name (its node ID at the control plane)")
	f.StringVar(&admin, "admin", "", "admin listener address (/ready, /stats, /metrics, /config_dump); empty disables it")
	f.StringVar(&mode, "mode", "", "data-plane mode, a label of every metric (sidecar, per-node)")
	tf.bind(f, "ads-", "control plane connection")
	f.IntVar(&adsMark, "ads-mark", 0, "SO_MARK of the control plane connection (a sidecar's own traffic, which interception lets pass)")
	return cmd
}

type stdLogger struct{ l *log.Logger }

func (s stdLogger) Logf(format string, args ...any) { s.l.Printf(format, args...) }
