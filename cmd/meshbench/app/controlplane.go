package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meshbench/meshbench/cmd/internal/role"
	"github.com/meshbench/meshbench/proxy/controlplane"
)

func newControlPlaneCommand(s Streams) *cobra.Command {
	var model, listen, admin, mutate string
	var tf role.TLSFlags
	cmd := &cobra.Command{
		Use:    "control-plane",
		Short:  "Run meshbench's xDS control plane (started by the platform)",
		Hidden: true,
		Args:   argsCheck(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := role.NewLogger(s.ErrOut, "control-plane: ")
			m, bundles, err := controlplane.ReadModel(model)
			if err != nil {
				return badInput(fmt.Errorf("flag --model: %w", err))
			}
			tlsConf, err := tf.Server("")
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
	tf.Bind(f, "", "xDS listener")
	f.StringVar(&mutate, "mutate", "", "test only: break one translation on purpose ("+strings.Join(controlplane.Mutations, ", ")+")")
	_ = f.MarkHidden("mutate")
	_ = cmd.MarkFlagRequired("model")
	return cmd
}
