package app

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/spf13/cobra"

	"github.com/meshbench/meshbench/cmd/internal/role"
	"github.com/meshbench/meshbench/proxy/xds"
)

// MaxSimulatedClients bounds one xds-clients process.
const MaxSimulatedClients = 20000

func newXDSClientsCommand(s Streams) *cobra.Command {
	var ads, replicaOf, prefix string
	var count, dialing int
	var decode bool
	var tf role.TLSFlags
	cmd := &cobra.Command{
		Use:   "xds-clients",
		Short: "Run simulated xDS clients of a control plane (started by the control-plane benchmark)",
		Long: `Run --count xDS clients, each on a gRPC connection and ADS stream of its own,
as node <prefix><i> of the cluster --replica-of: meshbench's control plane
serves each the configuration of that node. A client acknowledges every
response as it arrives (--decode: after decoding and checking it, as the
proxy does); it routes nothing.`,
		Hidden: true,
		Args:   argsCheck(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case ads == "":
				return badInput(errors.New("flag --ads: the control plane's address is required"))
			case replicaOf == "":
				return badInput(errors.New("flag --replica-of: the node whose configuration the clients take is required"))
			case count < 1 || count > MaxSimulatedClients:
				return badInput(fmt.Errorf("flag --count: must be between 1 and %d, got %d", MaxSimulatedClients, count))
			case dialing < 1:
				return badInput(fmt.Errorf("flag --dial-concurrency: must be at least 1, got %d", dialing))
			}
			tlsConf, err := tf.Client("ads-")
			if err != nil {
				return err
			}
			logger := role.NewLogger(s.ErrOut, "xds-clients: ")
			ctx := cmd.Context()
			// At most dialing clients connect at once: thousands of TLS
			// handshakes at one instant would time out, and are not what
			// a mesh's proxies do.
			slots := make(chan struct{}, dialing)
			var configured atomic.Int64
			var wg sync.WaitGroup
			errs := make([]error, count)
			for i := range count {
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
				}
				if ctx.Err() != nil {
					break
				}
				a := &xds.ADS{Addr: ads, Node: fmt.Sprintf("%s%d", prefix, i), Cluster: replicaOf,
					UserAgent: "meshbench-xds-clients", TLS: tlsConf, Log: logger, Opaque: !decode}
				// The slot is free once the client is configured, or gone.
				var release, first sync.Once
				free := func() { release.Do(func() { <-slots }) }
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer free()
					errs[i] = a.Run(ctx, func(*xds.Bundle) error {
						first.Do(func() {
							free()
							if n := configured.Add(1); n == int64(count) {
								logger.Logf("%d clients configured", n)
							}
						})
						return nil
					})
				}()
			}
			wg.Wait()
			return errors.Join(errs...)
		},
	}
	f := cmd.Flags()
	f.StringVar(&ads, "ads", "", "control plane address")
	f.StringVar(&replicaOf, "replica-of", "", "node whose configuration the clients are served (their xDS cluster)")
	f.StringVar(&prefix, "prefix", "sim-", "node ID prefix: the clients are <prefix>0 ... <prefix><count-1>")
	f.IntVar(&count, "count", 1, fmt.Sprintf("number of clients (at most %d)", MaxSimulatedClients))
	f.IntVar(&dialing, "dial-concurrency", 64, "clients connecting at once")
	f.BoolVar(&decode, "decode", false, "decode and check every response before acknowledging it, as the proxy does (the clients' own cost then adds to what is measured)")
	tf.Bind(f, "ads-", "control plane connection")
	return cmd
}
