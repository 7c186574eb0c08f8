package app

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshbench/meshbench/reports"
	"github.com/meshbench/meshbench/runner/results"
	"github.com/meshbench/meshbench/smps"
)

type publishOptions struct {
	to       string
	headers  []string
	noReport bool
	attempts int
}

func newPublishCommand(s Streams) *cobra.Command {
	o := &publishOptions{}
	cmd := &cobra.Command{
		Use:   "publish RESULTS_DIR --to DIR|URL",
		Short: "Publish a run's SMPS documents to a results index or an HTTP endpoint",
		Long: `publish appends a run to a results index: a directory with index.json and a
static index.html listing every run by date, scenario, mesh and mode, and per
run its SMPS documents and HTML report (runs/<run id>/), and history.html, the
change points of every series over the runs (meshbench history --format html). Publishing is safe to
run concurrently (an flock serializes writers; files are replaced atomically)
and idempotent: publishing a run again replaces it with the same content.

With an http(s) URL, the run's SMPS documents are POSTed as one JSON upload
({"runId", "scenario", "documents": [{"kind", "path", "document"}]}) with the
run id as Idempotency-Key, retried on connection errors, 429 and 5xx.`,
		Example: `  meshbench publish meshbench-results/default-20261122T050000Z --to /srv/meshbench-index
  meshbench publish results/ --to https://smp.example.com/api/results --header "Authorization: Bearer $TOKEN"`,
		Args: argsCheck(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(s, cmd, args[0]) },
	}
	f := cmd.Flags()
	f.StringVar(&o.to, "to", "", "results index directory, or http(s) URL to POST the SMPS documents to")
	f.StringArrayVar(&o.headers, "header", nil, "HTTP header for uploads, 'Name: value' (repeatable)")
	f.BoolVar(&o.noReport, "no-report", false, "do not add the run's HTML report to a results index")
	f.IntVar(&o.attempts, "attempts", 4, "HTTP upload attempts before giving up")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

func (o *publishOptions) run(s Streams, cmd *cobra.Command, dir string) error {
	if o.to == "" {
		return badInput(errors.New("flag --to: give a directory or an http(s) URL"))
	}
	header := http.Header{}
	for _, h := range o.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return badInput(fmt.Errorf("flag --header: %q is not 'Name: value'", h))
		}
		header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if o.attempts < 1 || o.attempts > 20 {
		return badInput(fmt.Errorf("flag --attempts: must be between 1 and 20, got %d", o.attempts))
	}
	m, err := results.ReadManifest(dir)
	if err != nil {
		return badResults(fmt.Errorf("%s is not a results directory: %w", dir, err))
	}
	trials, err := results.ReadTrials(dir)
	if err != nil {
		return badResults(err)
	}
	ctx := cmd.Context()
	if strings.HasPrefix(o.to, "http://") || strings.HasPrefix(o.to, "https://") {
		if err := smps.PublishHTTP(ctx, dir, m, o.to, smps.HTTPOptions{Attempts: o.attempts, Header: header}); err != nil {
			return err
		}
		fmt.Fprintf(s.Out, "published run %s to %s\n", m.RunID, o.to)
		return nil
	}
	if strings.Contains(o.to, "://") {
		return badInput(fmt.Errorf("flag --to: %q: only directories and http(s) URLs are supported", o.to))
	}
	var page []byte
	if !o.noReport {
		r := reports.NewReport(m, trials, nil, reports.DefaultSeed)
		r.LoadHistograms(dir)
		r.LoadProfiles(dir)
		var b bytes.Buffer
		if err := r.WriteHTML(&b); err != nil {
			return err
		}
		page = b.Bytes()
	}
	e, err := smps.PublishDir(ctx, dir, m, trials, page, o.to)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.Out, "published run %s (%d SMPS documents) to %s; index: %s\n", e.RunID, len(e.Documents), filepath.Join(o.to, e.Dir), filepath.Join(o.to, smps.IndexPage))
	err = smps.WriteHistoryPage(ctx, o.to, func(published []smps.PublishedRun) ([]byte, error) {
		var metrics []reports.Metric
		for _, name := range reports.HistoryMetrics {
			m, _ := reports.MetricByName(name)
			metrics = append(metrics, m)
		}
		var b bytes.Buffer
		err := reports.NewHistoryReport(o.to, toHistoryRuns(published), metrics, reports.DefaultChangeOptions).WriteHTML(&b)
		return b.Bytes(), err
	})
	if err != nil {
		// The run is in the index: the page is a view of it, and one
		// unreadable run must not make every later publish fail.
		fmt.Fprintf(s.ErrOut, "meshbench publish: warning: run %s is published, but %s was not updated: %v\n", e.RunID, filepath.Join(o.to, smps.HistoryPage), err)
	}
	return nil
}
