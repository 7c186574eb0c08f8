package smps

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshbench/meshbench/runner/results"
)

// Document is one SMPS document of a run, as published.
type Document struct {
	// Kind is the SMP message: EnvironmentConfig, PerformanceTestConfig,
	// PerformanceTestResult or ServiceMeshConfig.
	Kind string `json:"kind"`
	// Path is the document's path inside the results directory.
	Path     string          `json:"path"`
	Document json.RawMessage `json:"document"`
}

// kinds maps document file names to their SMP message and strict reader.
var kinds = map[string]struct {
	kind string
	read func(string) (Message, error)
}{
	results.SMPEnvFile:    {"EnvironmentConfig", func(p string) (Message, error) { return ReadEnvironment(p) }},
	results.SMPConfigFile: {"PerformanceTestConfig", func(p string) (Message, error) { return ReadConfig(p) }},
	results.SMPResultFile: {"PerformanceTestResult", func(p string) (Message, error) { return ReadResult(p) }},
	results.SMPMeshFile:   {"ServiceMeshConfig", func(p string) (Message, error) { return ReadMeshConfig(p) }},
}

// RunDocuments reads every SMPS document of a results directory, each
// checked strictly, in a stable order.
func RunDocuments(dir string) ([]Document, error) {
	var docs []Document
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		k, ok := kinds[d.Name()]
		if d.IsDir() || !ok {
			return nil
		}
		if _, err := k.read(path); err != nil {
			return fmt.Errorf("not a valid SMPS %s: %w", k.kind, err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		docs = append(docs, Document{Kind: k.kind, Path: filepath.ToSlash(rel), Document: json.RawMessage(data)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("%s: no SMPS documents", dir)
	}
	sort.Slice(docs, func(i, j int) bool { return docs[i].Path < docs[j].Path })
	return docs, nil
}

// runIDRE is what a run id may look like in a results index path.
var runIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// IndexEntry is one published run in a results index.
type IndexEntry struct {
	RunID     string    `json:"runId"`
	Scenario  string    `json:"scenario"`
	Start     time.Time `json:"start"`
	Meshbench string    `json:"meshbench"`
	// Modes are the run's mesh/mode pairs; Rates its requested rates.
	Modes  []string  `json:"modes"`
	Rates  []float64 `json:"rates"`
	Trials int       `json:"trials"`
	// Dir is the run's directory in the index; Report its HTML report
	// (empty when none was given); Documents its SMPS documents, relative
	// to Dir.
	Dir       string   `json:"dir"`
	Report    string   `json:"report,omitempty"`
	Documents []string `json:"documents"`
}

// Index is a results index's index.json.
type Index struct {
	Runs []IndexEntry `json:"runs"`
}

// IndexFile and IndexPage are a results index's listing, as JSON and HTML.
const (
	IndexFile = "index.json"
	IndexPage = "index.html"
	lockFile  = ".lock"
	// HistoryPage is the index's change-point report (meshbench history),
	// linked from IndexPage when present.
	HistoryPage = "history.html"
)

// entryFor describes a run for the index.
func entryFor(m *results.Manifest, trials []*results.Trial, docs []Document, report bool) IndexEntry {
	e := IndexEntry{RunID: m.RunID, Start: m.StartTime.UTC(), Meshbench: m.Meshbench.Version, Dir: "runs/" + m.RunID}
	if m.Scenario != nil {
		e.Scenario = m.Scenario.Name
	}
	seenMode, seenRate := map[string]bool{}, map[float64]bool{}
	for _, t := range trials {
		if !seenMode[t.Key()] {
			seenMode[t.Key()] = true
			e.Modes = append(e.Modes, t.Key())
		}
		if !seenRate[t.Requested] {
			seenRate[t.Requested] = true
			e.Rates = append(e.Rates, t.Requested)
		}
	}
	sort.Float64s(e.Rates)
	e.Trials = len(trials)
	for _, d := range docs {
		e.Documents = append(e.Documents, d.Path)
	}
	if report {
		e.Report = e.Dir + "/report.html"
	}
	return e
}

// PublishDir appends a run to the results index in dest (created when
// missing): its SMPS documents (and the HTML report, when given) go to
// dest/runs/<run id>/, and index.json and index.html list it by date,
// scenario, mesh and mode. Publishing the same run again replaces it with
// identical content; concurrent publishers are serialized by an flock on
// dest/.lock, and every file is replaced atomically, so readers never see
// a half-written index.
func PublishDir(ctx context.Context, runDir string, m *results.Manifest, trials []*results.Trial, reportHTML []byte, dest string) (IndexEntry, error) {
	if !runIDRE.MatchString(m.RunID) {
		return IndexEntry{}, fmt.Errorf("%s: run id %q is not a run id meshbench writes: refusing to use it as a directory name", runDir, m.RunID)
	}
	docs, err := RunDocuments(runDir)
	if err != nil {
		return IndexEntry{}, err
	}
	entry := entryFor(m, trials, docs, reportHTML != nil)
	if err := os.MkdirAll(filepath.Join(dest, "runs"), 0o755); err != nil {
		return entry, err
	}
	// Stage the run's files beside their final place, then swap them in
	// under the lock.
	stage, err := os.MkdirTemp(filepath.Join(dest, "runs"), ".stage-"+m.RunID+"-")
	if err != nil {
		return entry, err
	}
	defer os.RemoveAll(stage)
	for _, d := range docs {
		p := filepath.Join(stage, filepath.FromSlash(d.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return entry, err
		}
		if err := os.WriteFile(p, d.Document, 0o644); err != nil {
			return entry, err
		}
	}
	if reportHTML != nil {
		if err := os.WriteFile(filepath.Join(stage, "report.html"), reportHTML, 0o644); err != nil {
			return entry, err
		}
	}
	unlock, err := lock(ctx, filepath.Join(dest, lockFile))
	if err != nil {
		return entry, err
	}
	defer unlock()
	final := filepath.Join(dest, filepath.FromSlash(entry.Dir))
	old := final + ".old"
	_ = os.RemoveAll(old)
	if _, err := os.Stat(final); err == nil {
		if err := os.Rename(final, old); err != nil {
			return entry, err
		}
	}
	if err := os.Rename(stage, final); err != nil {
		_ = os.Rename(old, final) // put the previous copy back
		return entry, err
	}
	_ = os.RemoveAll(old)
	idx, err := ReadIndex(dest)
	if err != nil {
		return entry, err
	}
	replaced := false
	for i := range idx.Runs {
		if idx.Runs[i].RunID == entry.RunID {
			idx.Runs[i], replaced = entry, true
		}
	}
	if !replaced {
		idx.Runs = append(idx.Runs, entry)
	}
	sort.SliceStable(idx.Runs, func(i, j int) bool {
		if !idx.Runs[i].Start.Equal(idx.Runs[j].Start) {
			return idx.Runs[i].Start.After(idx.Runs[j].Start)
		}
		return idx.Runs[i].RunID < idx.Runs[j].RunID
	})
	if err := results.WriteJSON(filepath.Join(dest, IndexFile), idx); err != nil {
		return entry, err
	}
	return entry, writeIndexPage(dest, idx)
}

func writeIndexPage(dest string, idx *Index) error {
	_, err := os.Stat(filepath.Join(dest, HistoryPage))
	return results.WriteFile(filepath.Join(dest, IndexPage), indexHTML(idx, err == nil))
}

// WriteHistoryPage replaces the index's HistoryPage with what render
// makes of the index's runs (read under the index's lock, so that the
// page matches the index it sits in) and links it from IndexPage.
func WriteHistoryPage(ctx context.Context, dest string, render func([]PublishedRun) ([]byte, error)) error {
	unlock, err := lock(ctx, filepath.Join(dest, lockFile))
	if err != nil {
		return err
	}
	defer unlock()
	runs, err := ReadHistory(dest)
	if err != nil {
		return err
	}
	page, err := render(runs)
	if err != nil {
		return err
	}
	if err := results.WriteFile(filepath.Join(dest, HistoryPage), page); err != nil {
		return err
	}
	idx, err := ReadIndex(dest)
	if err != nil {
		return err
	}
	return writeIndexPage(dest, idx)
}

// ReadIndex reads dest's index.json (an empty index when there is none).
func ReadIndex(dest string) (*Index, error) {
	data, err := os.ReadFile(filepath.Join(dest, IndexFile))
	if errors.Is(err, fs.ErrNotExist) {
		return &Index{}, nil
	}
	if err != nil {
		return nil, err
	}
	var idx Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dest, IndexFile), err)
	}
	return &idx, nil
}

// lock takes an exclusive flock on path, waiting until ctx ends.
func lock(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func indexHTML(idx *Index, history bool) []byte {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>meshbench results</title><style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}table{border-collapse:collapse;font-size:.9em}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f4f4f4}
</style></head><body><h1>meshbench results</h1>
`)
	if history {
		fmt.Fprintf(&b, "<p><a href=\"%s\">History</a>: every series over these runs, with its change points.</p>\n", HistoryPage)
	}
	b.WriteString(`<table><tr><th>Date (UTC)</th><th>Scenario</th><th>Run</th><th>Meshes and modes</th><th>Rates (rps)</th><th>Trials</th><th>Report</th><th>SMPS</th></tr>
`)
	for _, e := range idx.Runs {
		var rates []string
		for _, r := range e.Rates {
			rates = append(rates, strconv.FormatFloat(r, 'f', -1, 64))
		}
		report := "–"
		if e.Report != "" {
			report = fmt.Sprintf(`<a href="%s">report</a>`, html.EscapeString(e.Report))
		}
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td>%s</td><td><a href=\"%s/\">%d documents</a></td></tr>\n",
			e.Start.Format("2006-01-02 15:04"), html.EscapeString(e.Scenario), html.EscapeString(e.RunID), html.EscapeString(strings.Join(e.Modes, ", ")),
			strings.Join(rates, ", "), e.Trials, report, html.EscapeString(e.Dir), len(e.Documents))
	}
	b.WriteString("</table></body></html>\n")
	return []byte(b.String())
}

// Upload is the body PublishHTTP posts: a run's SMPS documents.
type Upload struct {
	RunID     string     `json:"runId"`
	Scenario  string     `json:"scenario"`
	Documents []Document `json:"documents"`
}

// HTTPOptions bound PublishHTTP's retries.
type HTTPOptions struct {
	Client *http.Client
	// Attempts is the number of tries (default 4); Backoff the first wait
	// between them (default 500ms), doubling, or the server's Retry-After
	// (at most MaxWait, default 10s).
	Attempts int
	Backoff  time.Duration
	MaxWait  time.Duration
	// Header is added to every request (e.g. Authorization).
	Header http.Header
}

// PublishHTTP posts a run's SMPS documents as one JSON upload to url, with
// the run id as Idempotency-Key so that a retried or repeated upload can be
// recognized. It retries on connection errors, 429 and 5xx, and fails at
// once on any other status, quoting the server's answer.
func PublishHTTP(ctx context.Context, runDir string, m *results.Manifest, url string, o HTTPOptions) error {
	docs, err := RunDocuments(runDir)
	if err != nil {
		return err
	}
	up := Upload{RunID: m.RunID, Documents: docs}
	if m.Scenario != nil {
		up.Scenario = m.Scenario.Name
	}
	body, err := json.Marshal(up)
	if err != nil {
		return err
	}
	if o.Client == nil {
		// A redirect would turn the POST into a bodiless GET whose 200
		// would look like success: answer it as an error instead.
		o.Client = &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.Attempts <= 0 {
		o.Attempts = 4
	}
	if o.Backoff <= 0 {
		o.Backoff = 500 * time.Millisecond
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 10 * time.Second
	}
	wait := o.Backoff
	var last error
	for attempt := 1; attempt <= o.Attempts; attempt++ {
		retryAfter := time.Duration(0)
		retryAfter, last = post(ctx, o, url, m.RunID, body)
		var perm *permanentError
		if last == nil || errors.As(last, &perm) {
			return last
		}
		if attempt == o.Attempts {
			break
		}
		d := wait
		if retryAfter > 0 {
			d = retryAfter
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("publish to %s: %w (last attempt: %v)", url, ctx.Err(), last)
		case <-time.After(min(d, o.MaxWait)):
		}
		wait *= 2
	}
	return fmt.Errorf("publish to %s: gave up after %d attempts: %w", url, o.Attempts, last)
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// post makes one attempt; a *permanentError is not worth retrying, and
// the duration is the server's Retry-After.
func post(ctx context.Context, o HTTPOptions, url, runID string, body []byte) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, &permanentError{fmt.Errorf("publish: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", runID)
	for k, vs := range o.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, &permanentError{fmt.Errorf("publish to %s: %w", url, ctx.Err())}
		}
		return 0, fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode/100 == 2:
		return 0, nil
	case resp.StatusCode/100 == 3:
		return 0, &permanentError{fmt.Errorf("publish to %s: server answered %s to %s: use that URL (redirects are not followed: they would drop the upload)", url, resp.Status, resp.Header.Get("Location"))}
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode/100 == 5:
		var after time.Duration
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
			after = time.Duration(s) * time.Second
		}
		return after, fmt.Errorf("server answered %s: %s", resp.Status, strings.TrimSpace(string(excerpt)))
	}
	return 0, &permanentError{fmt.Errorf("publish to %s: server answered %s: %s", url, resp.Status, strings.TrimSpace(string(excerpt)))}
}
