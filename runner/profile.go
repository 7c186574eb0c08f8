package runner

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/runner/results"
)

// profileSeconds is how long a trial's profiles run: the window less a
// second, so that they end before the load does (its end stops the
// activities, and a profile cut short is lost), and at least one.
func profileSeconds(window time.Duration) int {
	return max(1, int(window/time.Second)-1)
}

// profiles is the activity that takes the Go profiles of each of dep's
// proxies that serves them, over the window: the heap at its start, a CPU
// profile, and the heap as the CPU profile ends (the two heap profiles'
// allocation counts differ by the allocations in between). They go into dir's profiles directory and
// tr.Profiles; a profile that cannot be taken is recorded with its
// reason and does not fail the trial.
func (r *run) profiles(dep *meshes.Deployment, dir string, tr *results.Trial) activity {
	secs := profileSeconds(r.Scenario.Load.Duration.D())
	return func(ctx context.Context, _ time.Time) error {
		if err := os.MkdirAll(filepath.Join(dir, results.ProfilesDir), 0o755); err != nil {
			return err
		}
		names := slices.Sorted(maps.Keys(dep.Profiles))
		out := make([]results.Profile, len(names))
		var wg sync.WaitGroup
		for i, name := range names {
			wg.Go(func() { out[i] = takeProfiles(ctx, dep.Profiles[name], name, dir, secs) })
		}
		wg.Wait()
		for _, p := range out {
			if p.Error != "" {
				r.Log.Logf("profiles of %s: %s", p.Proxy, p.Error)
			}
		}
		tr.Profiles = out
		return nil
	}
}

// takeProfiles takes one proxy's profiles from base (net/http/pprof's
// handlers).
func takeProfiles(ctx context.Context, base, proxy, dir string, secs int) results.Profile {
	p := results.Profile{Proxy: proxy, Seconds: secs}
	// Named as the proxy's logs are.
	file := func(kind string) string {
		return filepath.Join(results.ProfilesDir, proxy+"."+kind+".pb.gz")
	}
	client := &http.Client{Timeout: time.Duration(secs)*time.Second + 30*time.Second}
	get := func(query, kind string) (string, error) {
		rel := file(kind)
		return rel, fetchTo(ctx, client, base+query, filepath.Join(dir, rel))
	}
	var errs []string
	var mu sync.Mutex
	fail := func(what string, err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, what+": "+err.Error())
	}
	// The heap profile's allocation counts are as of the last completed
	// collection: one forced at each end makes their difference the
	// window's allocations (net/http/pprof's delta profiles force none,
	// and a quiet proxy may not collect for seconds).
	if rel, err := get("heap?gc=1", "heap-start"); err != nil {
		fail("heap at the start", err)
	} else {
		p.HeapStart = rel
	}
	if rel, err := get("profile?seconds="+strconv.Itoa(secs), "cpu"); err != nil {
		fail("cpu", err)
	} else {
		p.CPU = rel
	}
	if rel, err := get("heap?gc=1", "heap"); err != nil {
		fail("heap", err)
	} else {
		p.Heap = rel
	}
	slices.Sort(errs)
	p.Error = strings.Join(errs, "; ")
	return p
}

// fetchTo writes what a GET of url answers with 200 to path.
func fetchTo(ctx context.Context, client *http.Client, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(msg)))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return f.Close()
}
