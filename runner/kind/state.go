package kind

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/meshbench/meshbench/runner/local"
	"github.com/meshbench/meshbench/runner/results"
)

// kindRecord is what a kind run's state file says: who owns the run and
// what it created, written before each thing is created, so that the next
// start after a crash finds and removes it all.
type kindRecord struct {
	RunID      string    `json:"runID"`
	PID        int       `json:"pid"`
	StartTicks uint64    `json:"startTicks"`
	Created    time.Time `json:"created"`
	Cluster    string    `json:"cluster"`
	// Kube is set for a kube run: how to reach its cluster (Cluster is
	// then only its name).
	Kube *KubeTarget `json:"kube,omitempty"`
	// CreatedCluster says the run creates the cluster; it is deleted
	// with the run unless Keep.
	CreatedCluster bool       `json:"createdCluster,omitempty"`
	Keep           bool       `json:"keep,omitempty"`
	Namespace      string     `json:"namespace,omitempty"`
	Routes         [][]string `json:"routes,omitempty"`
	// Images are the images the run loaded (removed with it unless a
	// live run uses them); Uses, the images it runs.
	Images  []string `json:"images,omitempty"`
	Uses    []string `json:"uses,omitempty"`
	Control string   `json:"control,omitempty"`
}

type kindState struct {
	dir string
	rec kindRecord
}

func kindStateDir(stateDir string) string { return filepath.Join(stateDir, "kind") }

func (s *kindState) path() string { return filepath.Join(s.dir, s.rec.RunID+".json") }

// recordPath is the state file of run id.
func recordPath(stateDir, id string) string { return filepath.Join(kindStateDir(stateDir), id+".json") }

func newKindState(stateDir, runID, cluster string, kube *KubeTarget) (*kindState, error) {
	ticks, err := local.StartTicks(os.Getpid())
	if err != nil {
		return nil, err
	}
	s := &kindState{dir: kindStateDir(stateDir), rec: kindRecord{RunID: runID, PID: os.Getpid(), StartTicks: ticks,
		Created: time.Now().UTC(), Cluster: cluster, Kube: kube}}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, err
	}
	return s, results.WriteJSON(s.path(), s.rec)
}

func (s *kindState) update(f func(*kindRecord)) error {
	f(&s.rec)
	return results.WriteJSON(s.path(), s.rec)
}

func (s *kindState) remove() error {
	if err := os.Remove(s.path()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// lockRuns takes the kind state directory's lock: runs count their use
// of shared things (host routes to a cluster's pods, images in its nodes)
// through each other's records, and must not read them half-changed.
func lockRuns(stateDir string) (func(), error) {
	dir := kindStateDir(stateDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return local.LockDir(dir)
}

// readKindRecords reads the state files; ones that vanish meanwhile are
// skipped.
func readKindRecords(stateDir string) ([]kindRecord, error) {
	dir := kindStateDir(stateDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []kindRecord
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var r kindRecord
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, e.Name()), err)
		}
		out = append(out, r)
	}
	return out, nil
}

// liveOthers are the records of live runs other than id.
func liveOthers(stateDir, id string) ([]kindRecord, error) {
	all, err := readKindRecords(stateDir)
	var out []kindRecord
	for _, r := range all {
		if r.RunID != id && local.OwnerAlive(r.PID, r.StartTicks) {
			out = append(out, r)
		}
	}
	return out, err
}

// CleanupRuns removes what kind runs whose owner process is dead left
// behind: the clusters they created (unless kept), else their
// namespaces and the images they loaded; their host routes and control
// directories; what a live run also uses stays. A dead run whose
// leftovers cannot all be removed keeps its state file and is reported,
// not fatal: the next start tries again.
func CleanupRuns(ctx context.Context, stateDir string, log Logger) error {
	unlock, err := lockRuns(stateDir)
	if err != nil {
		return err
	}
	defer unlock()
	all, err := readKindRecords(stateDir)
	if err != nil {
		return err
	}
	var live []kindRecord
	for _, r := range all {
		if local.OwnerAlive(r.PID, r.StartTicks) {
			live = append(live, r)
		}
	}
	for _, r := range all {
		if local.OwnerAlive(r.PID, r.StartTicks) {
			continue
		}
		plat := "kind"
		if r.Kube != nil {
			plat = "kube"
		}
		log.Logf("removing leftovers of dead %s run %s (cluster %s)", plat, r.RunID, r.Cluster)
		var client *Client
		if r.Kube != nil {
			client = kubeCleanupClient(ctx, r, stateDir, log)
		} else if cfg, err := Kubeconfig(r.Cluster, log); err == nil {
			client, _ = NewClient([]byte(cfg))
		}
		kept, err := removeKindRun(ctx, r, client, live, log)
		if err != nil {
			log.Logf("dead run %s: not everything could be removed (the next start tries again; %s lists it): %v", r.RunID, recordPath(stateDir, r.RunID), err)
			continue
		}
		path := recordPath(stateDir, r.RunID)
		if kept != nil {
			// What live runs use stays listed for a later start.
			if err := results.WriteJSON(path, kept); err != nil {
				return err
			}
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// kubeCleanupClient is a client of a dead kube run's cluster, if it
// answers within seconds (a start does not wait on a cluster that is gone
// while it holds the runs' lock), else nil, said in the log.
func kubeCleanupClient(ctx context.Context, r kindRecord, stateDir string, log Logger) *Client {
	c, err := KubeClient(*r.Kube)
	if err == nil {
		err = KubeAnswers(ctx, c, 5*time.Second)
	}
	if err != nil {
		log.Logf("dead kube run %s: cluster %s: %v (delete %s to forget its namespace %s)", r.RunID, r.Cluster, err, recordPath(stateDir, r.RunID), r.Namespace)
		return nil
	}
	return c
}

// removeKindRun removes what a record lists, every step attempted. What
// a live run (of others) also uses is left, and returned as the record to
// keep for a later start (nil when nothing is left). client is nil when
// the cluster cannot be reached (then it is gone, or its objects cannot
// be removed, which is an error unless it is gone).
func removeKindRun(ctx context.Context, r kindRecord, client *Client, others []kindRecord, log Logger) (*kindRecord, error) {
	var errs []error
	// A kube run's cluster is not kind's to list: it is there as far as
	// the run's records go.
	exists := r.Kube != nil
	if !exists {
		var err error
		if exists, err = Exists(r.Cluster, log); err != nil {
			errs = append(errs, err)
		}
	}
	used := func(match func(kindRecord) bool) bool { return usedBy(r, others, match) }
	kept := kindRecord{RunID: r.RunID, PID: r.PID, StartTicks: r.StartTicks, Created: r.Created, Cluster: r.Cluster, Kube: r.Kube, Keep: r.Keep}
	switch {
	case !exists:
	case r.CreatedCluster && !r.Keep && !used(func(kindRecord) bool { return true }):
		if err := Delete(r.Cluster, "", log); err != nil {
			errs = append(errs, fmt.Errorf("delete cluster %s: %w", r.Cluster, err))
		}
	default:
		// A cluster the run created that a live run also uses is deleted
		// by a start after that run.
		kept.CreatedCluster = r.CreatedCluster
		if r.Namespace != "" {
			if client == nil {
				errs = append(errs, fmt.Errorf("cluster %s: no client to delete namespace %s", r.Cluster, r.Namespace))
			} else {
				errs = append(errs, deleteNamespace(ctx, client, r.Namespace))
			}
		}
		for _, img := range r.Images {
			if used(func(o kindRecord) bool { return slices.Contains(o.Uses, img) }) {
				kept.Images = append(kept.Images, img)
				continue
			}
			errs = append(errs, RemoveImage(r.Cluster, img, log))
		}
	}
	if r.Control != "" && strings.HasPrefix(filepath.Base(r.Control), ".meshbench-") {
		errs = append(errs, os.RemoveAll(r.Control))
	}
	for _, route := range r.Routes {
		if used(func(o kindRecord) bool {
			return slices.ContainsFunc(o.Routes, func(x []string) bool { return slices.Equal(x, route) })
		}) {
			kept.Routes = append(kept.Routes, route)
			continue
		}
		if out, err := runIP(ctx, append([]string{"route", "del"}, route...)...); err != nil && !strings.Contains(out, "No such process") {
			errs = append(errs, fmt.Errorf("ip route del %s: %v: %s", strings.Join(route, " "), err, out))
		}
	}
	if !kept.CreatedCluster && len(kept.Images) == 0 && len(kept.Routes) == 0 {
		return nil, errors.Join(errs...)
	}
	return &kept, errors.Join(errs...)
}

// usedBy says whether a live run of others on r's cluster uses what
// match looks for.
func usedBy(r kindRecord, others []kindRecord, match func(kindRecord) bool) bool {
	for _, o := range others {
		if o.Cluster == r.Cluster && match(o) {
			return true
		}
		// A live kube run on this kind cluster (its kubeconfig names it
		// kind-<name>) lists nothing of what it depends on there: the
		// cluster, its images and routes all stay for it.
		if o.Kube != nil && r.Kube == nil && o.Cluster == "kind-"+r.Cluster {
			return true
		}
	}
	return false
}

// deleteNamespace deletes a namespace and waits until it is gone.
func deleteNamespace(ctx context.Context, c *Client, ns string) error {
	nss := c.cs.CoreV1().Namespaces()
	zero := int64(0)
	if err := nss.Delete(ctx, ns, metav1.DeleteOptions{GracePeriodSeconds: &zero}); !isGone(err) {
		return fmt.Errorf("delete namespace %s: %w", ns, err)
	}
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := nss.Get(ctx, ns, metav1.GetOptions{})
		return err != nil && isGone(err), nil
	})
	if err != nil {
		return fmt.Errorf("namespace %s still there after 2m: %w", ns, err)
	}
	return nil
}

// runIP runs the ip command and returns its combined output.
func runIP(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
