package runner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServedCountAcrossRestarts: a service killed and started again
// counts what each incarnation served: a killed one up to its last tick,
// the last one what it reported at exit.
func TestServedCountAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	write := func(name, log string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(log), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The replacement's first tick above the killed one's last: only
	// the start event tells them apart.
	killedThenReported := write("a.log", `{"event":"start"}
{"event":"tick","time":"2026-12-01T00:00:01Z","requests":10}
{"event":"tick","time":"2026-12-01T00:00:02Z","requests":20}
{"event":"start"}
{"event":"tick","time":"2026-12-01T00:00:04Z","requests":25}
{"event":"served","requests":27,"calls":3,"callErrors":0,"http1":27}
`)
	if got := servedCount("a", killedThenReported); got.Requests != 47 || got.Unreported != 1 || got.Calls != 3 || got.HTTP1 != 27 || len(got.Ticks) != 3 {
		t.Errorf("killed, then reported: %+v, want 47 requests, 1 unreported incarnation", got)
	}
	reported := write("b.log", `{"event":"start"}
{"event":"tick","time":"2026-12-01T00:00:01Z","requests":10}
{"event":"served","requests":12,"calls":0,"callErrors":0}
`)
	if got := servedCount("b", reported); got.Requests != 12 || got.Unreported != 0 || got.FirstError != "" {
		t.Errorf("reported: %+v", got)
	}
	killedLast := write("c.log", `{"event":"start"}
{"event":"served","requests":4,"calls":1,"callErrors":1,"firstError":"call x: refused"}
{"event":"start"}
{"event":"tick","time":"2026-12-01T00:00:04Z","requests":9}
`)
	if got := servedCount("c", killedLast); got.Requests != 13 || got.Unreported != 1 || !strings.HasPrefix(got.FirstError, "call x: refused; 1 incarnation") {
		t.Errorf("killed last: %+v", got)
	}
	if got := servedCount("d", write("d.log", "")); got.Requests != -1 {
		t.Errorf("no counts: %+v, want -1", got)
	}
}
