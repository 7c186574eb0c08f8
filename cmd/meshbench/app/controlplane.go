package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meshbench/meshbench/proxy/controlplane"
	"github.com/meshbench/meshbench/proxy/identity"
)

// tlsFlags name a mutual-TLS identity on disk and the peers it accepts.
type tlsFlags struct {
	cert, key, ca string
	peers         []string
}

func (f *tlsFlags) bind(fs interface {
	StringVar(*string, string, string, string)
	StringSliceVar(*[]string, string, []string, string)
}, prefix, what string) {
	fs.StringVar(&f.cert, prefix+"cert", "", what+": certificate file (mutual TLS; empty is plaintext)")
	fs.StringVar(&f.key, prefix+"key", "", what+": private key file")
	fs.StringVar(&f.ca, prefix+"ca", "", what+": CA bundle file")
	fs.StringSliceVar(&f.peers, prefix+"peer-id", nil, what+": SPIFFE IDs of the peers to accept (empty accepts any the CA signed)")
}

// source returns the identity, or nil when no certificate is named.
func (f *tlsFlags) source(prefix string) (*identity.Source, error) {
	if f.cert == "" && f.key == "" && f.ca == "" {
		return nil, nil
	}
	if f.cert == "" || f.key == "" || f.ca == "" {
		return nil, badInput(fmt.Errorf("flags --%scert, --%skey and --%sca go together", prefix, prefix, prefix))
	}
	src, err := identity.NewSource(identity.Files{Cert: f.cert, Key: f.key, CA: f.ca})
	if err != nil {
		return nil, badInput(fmt.Errorf("flag --%scert: %w", prefix, err))
	}
	return src, nil
}

func (f *tlsFlags) server(prefix string) (*tls.Config, error) {
	src, err := f.source(prefix)
	if src == nil || err != nil {
		return nil, err
	}
	return src.ServerConfig(identity.AllowIDs(f.peers...), "h2"), nil
}

func (f *tlsFlags) client(prefix string) (*tls.Config, error) {
	src, err := f.source(prefix)
	if src == nil || err != nil {
		return nil, err
	}
	return src.ClientConfig(identity.AllowIDs(f.peers...), "h2"), nil
}

func newControlPlaneCommand(s Streams) *cobra.Command {
	var model, listen, admin, mutate string
	var tf tlsFlags
	cmd := &cobra.Command{
		Use:    "control-plane",
		Short:  "Run meshbench's xDS control plane (started by the platform)",
		Hidden: true,
		Args:   argsCheck(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := stdLogger{log.New(s.ErrOut, "control-plane: ", log.LstdFlags|log.Lmicroseconds)}
			m, bundles, err := controlplane.ReadModel(model)
			if err != nil {
				return badInput(fmt.Errorf("flag --model: %w", err))
			}
			tlsConf, err := tf.server("")
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			srv := controlplane.New(ctx, controlplane.WithLogger(logger), controlplane.WithGRPCNodes(m.GRPC...))
			var popts []controlplane.PlaneOption
			if mutate != "" {
				popts = append(popts, controlplane.WithMutation(mutate))
				logger.Logf("MUTATED (test-only): %s", mutate)
			}
			plane, err := controlplane.NewPlane(ctx, srv, m, bundles, popts...)
			if err != nil {
				return badInput(fmt.Errorf("flags --model/--mutate: %w", err))
			}
			opts := controlplane.GRPCOptions()
			if tlsConf != nil {
				opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConf)))
			}
			g := grpc.NewServer(opts...)
			srv.Register(g)
			xdsLn, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("xDS listener: %w", err)
			}
			adminLn, err := net.Listen("tcp", admin)
			if err != nil {
				xdsLn.Close()
				return fmt.Errorf("admin listener: %w", err)
			}
			web := &http.Server{Handler: plane.Handler(), ReadHeaderTimeout: 5 * time.Second}
			group, gctx := errgroup.WithContext(ctx)
			group.Go(func() error { return g.Serve(xdsLn) })
			group.Go(func() error {
				if err := web.Serve(adminLn); !errors.Is(err, http.ErrServerClosed) {
					return err
				}
				return nil
			})
			group.Go(func() error {
				<-gctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = web.Shutdown(sctx)
				g.Stop()
				return nil
			})
			plane.SetReady()
			logger.Logf("serving %d nodes on %s (admin %s)", len(bundles), xdsLn.Addr(), adminLn.Addr())
			err = group.Wait()
			st := plane.Status()
			logger.Logf("stopped at version %s after %d changes", st.Version, len(st.Changes))
			if ctx.Err() != nil {
				return nil
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&model, "model", "", "model file: each node's base xDS bundle and the services policy names")
	f.StringVar(&listen, "listen", "127.0.0.1:15010", "xDS (gRPC) listen address")
	f.StringVar(&admin, "admin", "127.0.0.1:15014", "admin listen address (/ready, /status, PUT /policies)")
	tf.bind(f, "", "xDS listener")
	f.StringVar(&mutate, "mutate", "", "test only: break one translation on purpose ("+strings.Join(controlplane.Mutations, ", ")+")")
	_ = f.MarkHidden("mutate")
	_ = cmd.MarkFlagRequired("model")
	return cmd
}
