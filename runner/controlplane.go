package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/meshbench/meshbench/meshes"
	"github.com/meshbench/meshbench/proxy/controlplane"
	"github.com/meshbench/meshbench/runner/results"
)

// controlPlaneReport fetches a control plane's status when the load ends,
// keeps it in the trial's logs, and summarizes it for the trial record: a
// configuration a client rejected is part of the trial's outcome.
func controlPlaneReport(ctx context.Context, c *meshes.Component, logDir string) (*results.ControlPlane, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Status, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s status: %w", c.Name, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s status: %d %v", c.Name, resp.StatusCode, err)
	}
	if err := os.WriteFile(filepath.Join(logDir, c.Name+".status.json"), data, 0o644); err != nil {
		return nil, err
	}
	var st controlplane.Status
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("%s status: %w", c.Name, err)
	}
	out := &results.ControlPlane{Version: st.Version, Changes: len(st.Changes), Nodes: len(st.Nodes)}
	for _, id := range slices.Sorted(maps.Keys(st.Nodes)) {
		n := st.Nodes[id]
		if n.Current {
			out.Current++
		}
		for _, nk := range n.NACKs {
			out.NACKs = append(out.NACKs, results.NACK{Node: id, Type: nk.Type, Version: nk.Version, Message: nk.Message})
		}
	}
	return out, nil
}
