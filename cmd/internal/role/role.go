// Package role is what meshbench's data-plane roles share between the
// meshbench binary (every role) and meshbench-proxy (the proxy role
// alone): their configuration-source and identity flags, the Go runtime
// policy of a proxy, and the proxy command itself.
//
// meshbench-proxy exists for memory: the meshbench binary links the
// Kubernetes client, kind, fortio and the reports, whose package
// initialisation and code pages a proxy process would otherwise carry
// (measured idle: 59 MB resident as `meshbench proxy`, 22 MB as
// meshbench-proxy; see the README). Nothing here may import more than
// the proxy needs.
package role

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/meshbench/meshbench/proxy"
	"github.com/meshbench/meshbench/proxy/identity"
	"github.com/meshbench/meshbench/proxy/xds"
)

// BadInputError marks an error as bad input (exit code 2). File says
// the input is a file or directory, not the command line (no usage hint).
type BadInputError struct {
	Err  error
	File bool
}

func (e *BadInputError) Error() string { return e.Err.Error() }
func (e *BadInputError) Unwrap() error { return e.Err }

// BadInput wraps err as bad input; nil stays nil.
func BadInput(err error) error {
	if err == nil {
		return nil
	}
	return &BadInputError{Err: err}
}

// Logger is a log.Logger as the proxy, xDS and control-plane packages
// take it.
type Logger struct{ L *log.Logger }

// NewLogger logs to w with prefix and microsecond times.
func NewLogger(w io.Writer, prefix string) Logger {
	return Logger{log.New(w, prefix, log.LstdFlags|log.Lmicroseconds)}
}

func (l Logger) Logf(format string, args ...any) { l.L.Printf(format, args...) }

// TLSFlags name a mutual-TLS identity on disk and the peers it accepts.
type TLSFlags struct {
	Cert, Key, CA string
	Peers         []string
}

// Bind binds the flags, each named with prefix.
func (f *TLSFlags) Bind(fs *pflag.FlagSet, prefix, what string) {
	fs.StringVar(&f.Cert, prefix+"cert", "", what+": certificate file (mutual TLS; empty is plaintext)")
	fs.StringVar(&f.Key, prefix+"key", "", what+": private key file")
	fs.StringVar(&f.CA, prefix+"ca", "", what+": CA bundle file")
	fs.StringSliceVar(&f.Peers, prefix+"peer-id", nil, what+": SPIFFE IDs of the peers to accept (empty accepts any the CA signed)")
}

// Source returns the identity, or nil when no certificate is named.
func (f *TLSFlags) Source(prefix string) (*identity.Source, error) {
	if f.Cert == "" && f.Key == "" && f.CA == "" {
		return nil, nil
	}
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return nil, BadInput(fmt.Errorf("flags --%scert, --%skey and --%sca go together", prefix, prefix, prefix))
	}
	src, err := identity.NewSource(identity.Files{Cert: f.Cert, Key: f.Key, CA: f.CA})
	if err != nil {
		return nil, BadInput(fmt.Errorf("flag --%scert: %w", prefix, err))
	}
	return src, nil
}

// Server is the identity's server configuration (nil: plaintext).
func (f *TLSFlags) Server(prefix string) (*tls.Config, error) {
	src, err := f.Source(prefix)
	if src == nil || err != nil {
		return nil, err
	}
	return src.ServerConfig(identity.AllowIDs(f.Peers...), "h2"), nil
}

// Client is the identity's client configuration (nil: plaintext).
func (f *TLSFlags) Client(prefix string) (*tls.Config, error) {
	src, err := f.Source(prefix)
	if src == nil || err != nil {
		return nil, err
	}
	return src.ClientConfig(identity.AllowIDs(f.Peers...), "h2"), nil
}

// MeshFlags are a workload's or proxy's configuration source: a bundle
// file, or the control plane.
type MeshFlags struct {
	Bundle, ADS, Node string
	ADSMark           int
	TLS               TLSFlags
}

// Bind binds the flags; node is --node's default.
func (f *MeshFlags) Bind(fs *pflag.FlagSet, what, node string) {
	fs.StringVar(&f.Bundle, "xds", "", what+" with this xDS bundle (a DiscoveryResponse in JSON or YAML)")
	fs.StringVar(&f.ADS, "ads", "", what+" with the configuration of this control plane, following its changes")
	fs.StringVar(&f.Node, "node", node, "the node ID at the control plane (and in the bundle)")
	f.TLS.Bind(fs, "ads-", "control plane connection")
	fs.IntVar(&f.ADSMark, "ads-mark", 0, "SO_MARK of the control plane connection (a sidecar's own traffic, which interception lets pass)")
}

// Source returns the configuration source, and the bundle when it is a
// file (read and checked now: a bad one is bad input); nil when neither
// is named.
func (f *MeshFlags) Source(logger xds.Logger) (xds.Source, *xds.Bundle, error) {
	switch {
	case f.Bundle != "" && f.ADS != "":
		return nil, nil, BadInput(errors.New("flags --xds and --ads: give one configuration source"))
	case f.Bundle != "":
		b, err := xds.ReadFile(f.Bundle)
		if err != nil {
			return nil, nil, BadInput(err)
		}
		return xds.Static{Bundle: b}, b, nil
	case f.ADS != "":
		if f.Node == "" {
			return nil, nil, BadInput(errors.New("flag --node: the control plane needs the node ID"))
		}
		tlsConf, err := f.TLS.Client("ads-")
		if err != nil {
			return nil, nil, err
		}
		return &xds.ADS{Addr: f.ADS, Node: f.Node, TLS: tlsConf, Mark: f.ADSMark, Log: logger}, nil, nil
	}
	return nil, nil, nil
}

// NewProxyCommand is the proxy role: `proxy --xds FILE` or `proxy --ads
// ADDR`, started by the platform.
func NewProxyCommand(stdout, stderr io.Writer) *cobra.Command {
	var admin, mode, engine string
	var mf MeshFlags
	var gc GCFlags
	cmd := &cobra.Command{
		Use:    "proxy",
		Short:  "Run meshbench's proxy with an xDS bundle or a control plane (started by the platform)",
		Hidden: true,
		Args: func(cmd *cobra.Command, args []string) error {
			return BadInput(cobra.NoArgs(cmd, args))
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := NewLogger(stderr, "proxy: ")
			if err := proxy.ValidEngine(engine); err != nil {
				return BadInput(fmt.Errorf("--http1: %w", err))
			}
			if err := gc.Apply(cmd.Flags(), logger); err != nil {
				return BadInput(err)
			}
			logger.Logf("HTTP/1.1 engine: %s", engine)
			opts := []proxy.Option{proxy.WithLogger(logger), proxy.WithAccessLog(stdout), proxy.WithHTTP1Engine(engine)}
			src, b, err := mf.Source(logger)
			switch {
			case err != nil:
				return err
			case src == nil:
				return BadInput(xds.ErrNoSource)
			case b != nil:
				// A bad bundle stops the proxy at start, with the field named.
				cfg, err := xds.Translate(b, mf.Node, admin)
				if err != nil {
					return BadInput(fmt.Errorf("%s: %w", mf.Bundle, err))
				}
				cfg.Mode = mode
				source, err := b.Marshal()
				if err != nil {
					return err
				}
				p, err := proxy.New(*cfg, append(opts, proxy.WithConfigSource(source), proxy.WithVersion(b.VersionInfo))...)
				if err != nil {
					return BadInput(err)
				}
				return p.Run(cmd.Context())
			}
			p, err := proxy.New(proxy.Config{Node: mf.Node, Admin: admin, Mode: mode}, append(opts, proxy.AwaitConfig())...)
			if err != nil {
				return BadInput(err)
			}
			group, ctx := errgroup.WithContext(cmd.Context())
			group.Go(func() error { return p.Run(ctx) })
			group.Go(func() error { return src.Run(ctx, xds.Apply(p, mf.Node)) })
			return group.Wait()
		},
	}
	f := cmd.Flags()
	mf.Bind(f, "configure the proxy", "proxy")
	f.StringVar(&admin, "admin", "", "admin listener address (/ready, /stats, /metrics, /config_dump); empty disables it")
	f.StringVar(&mode, "mode", "", "data-plane mode, a label of every metric (sidecar, per-node)")
	f.StringVar(&engine, "http1", proxy.EngineNetHTTP, "HTTP/1.1 engine: net/http, or fasthttp (HTTP/1.1-only listeners, bodies held whole; listeners it cannot serve stay on net/http)")
	gc.Bind(f)
	return cmd
}

// GCFlags are a Go proxy's runtime policy: its collector's target and
// memory limit. Unset, the GOGC and GOMEMLIMIT environment (or Go's
// defaults) stand.
type GCFlags struct {
	gogc        string
	memoryLimit int64
}

// Bind binds --gogc and --memory-limit.
func (g *GCFlags) Bind(f *pflag.FlagSet) {
	f.StringVar(&g.gogc, "gogc", "", "garbage-collection target percent, or off (as GOGC; overrides it)")
	f.Int64Var(&g.memoryLimit, "memory-limit", 0, "soft memory limit in bytes (as GOMEMLIMIT; overrides it)")
}

// Apply sets the policy and logs the one in effect, with the binary and
// GOMAXPROCS (Go sets it from the process's CPU set, which the platform
// pins).
func (g *GCFlags) Apply(f *pflag.FlagSet, logger Logger) error {
	if f.Changed("gogc") {
		switch n, err := strconv.Atoi(g.gogc); {
		case g.gogc == "off":
			debug.SetGCPercent(-1)
		case err != nil || n < 1:
			return fmt.Errorf("invalid --gogc %q: want a percent of at least 1, or off", g.gogc)
		default:
			debug.SetGCPercent(n)
		}
	}
	if f.Changed("memory-limit") {
		if g.memoryLimit <= 0 {
			return fmt.Errorf("invalid --memory-limit %d: want a positive number of bytes", g.memoryLimit)
		}
		debug.SetMemoryLimit(g.memoryLimit)
	}
	percent := debug.SetGCPercent(-1)
	debug.SetGCPercent(percent)
	limit := "none"
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		limit = strconv.FormatInt(l, 10) + " bytes"
	}
	if percent < 0 && limit == "none" {
		from := "--gogc off"
		if !f.Changed("gogc") {
			from = "GOGC=off in the environment"
		}
		return fmt.Errorf("invalid %s: without a memory limit (--memory-limit or GOMEMLIMIT) the heap grows without bound", from)
	}
	logger.Logf("runtime: %s, GOMAXPROCS %d, GOGC %d (negative: off), memory limit %s", filepath.Base(os.Args[0]), runtime.GOMAXPROCS(0), percent, limit)
	return nil
}

// ExitForced is the exit code when a second interrupt cuts teardown (or
// a drain) short.
const ExitForced = 130

// InterruptContext returns a context cancelled by the first SIGINT or
// SIGTERM, so that a command tears down (a proxy drains) in order. A
// second signal exits at once, saying so as name.
func InterruptContext(parent context.Context, errOut io.Writer, name string) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-done:
			return
		}
		select {
		case s := <-sigs:
			fmt.Fprintf(errOut, "%s: second %s: exiting without teardown; the next run removes what is left\n", name, s)
			os.Exit(ExitForced)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}
