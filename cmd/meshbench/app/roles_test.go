package app

import (
	"slices"
	"testing"
)

// TestBootstrapEnv: the re-executed role sees GRPC_XDS_BOOTSTRAP once,
// with the asked-for file, whatever the environment had (the first of a
// duplicated variable wins, so an earlier one would make it loop).
func TestBootstrapEnv(t *testing.T) {
	got := bootstrapEnv([]string{"A=1", "GRPC_XDS_BOOTSTRAP=/old.json", "B=2", "GRPC_XDS_BOOTSTRAP=", "MESHBENCH_GRPC_REEXEC=1"}, "/new.json")
	want := []string{"A=1", "B=2", "GRPC_XDS_BOOTSTRAP=/new.json", "MESHBENCH_GRPC_REEXEC=1"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
