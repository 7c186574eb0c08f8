package nodeimage

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/meshbench/meshbench/runner/kind/images"
)

// The pods' image is tagged by its content: another binary, another tag,
// and the digest stays when the version is as long as a tag may be.
func TestInitImageTag(t *testing.T) {
	dir := t.TempDir()
	bin := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ref, err := images.FromLayers(nil, images.Config{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := bin("a", "one build"), bin("b", "another build")
	tag := func(bin, version string, byContent bool) string {
		t.Helper()
		r, _, err := InitImage(ref, bin, nil, version, byContent)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if got := tag(a, "v1.2", false); got != InitRepository+":v1.2" {
		t.Errorf("by version: %s", got)
	}
	byContent := regexp.MustCompile(`^` + regexp.QuoteMeta(InitRepository) + `:v1\.2-[0-9a-f]{12}$`)
	ta, tb := tag(a, "v1.2", true), tag(b, "v1.2", true)
	if !byContent.MatchString(ta) || !byContent.MatchString(tb) || ta == tb {
		t.Errorf("by content: %s and %s, want two tags v1.2-<digest>", ta, tb)
	}
	long := strings.Repeat("x", 200)
	tl := tag(a, long, true)
	if _, t0, _ := strings.Cut(tl, ":"); len(t0) != maxTag || !strings.HasSuffix(tl, ta[len(ta)-13:]) {
		t.Errorf("a 200-character version: %s (%d), want 128 characters ending in the digest %s", tl, len(t0), ta[len(ta)-13:])
	}
}
