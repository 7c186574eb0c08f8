package scenarios

import (
	"embed"
	"fmt"
	"path"
	"sort"
	"strings"
)

//go:embed library/*.yaml
var library embed.FS

// DefaultName is the built-in scenario that `meshbench run` runs with no
// argument.
const DefaultName = "default"

// Builtin is one scenario of the embedded library.
type Builtin struct {
	Name        string
	Description string
	// Source is the YAML as embedded, comments included.
	Source []byte
}

// Builtins lists the embedded scenarios by name.
func Builtins() []Builtin {
	entries, err := library.ReadDir("library")
	if err != nil {
		panic(err) // the embedded directory is part of the binary
	}
	var out []Builtin
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".yaml")
		b, _ := lookupBuiltin(name)
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func lookupBuiltin(name string) (Builtin, bool) {
	data, err := library.ReadFile(path.Join("library", name+".yaml"))
	if err != nil {
		return Builtin{}, false
	}
	b := Builtin{Name: name, Source: data}
	if s, err := Parse(name, data); err == nil {
		b.Description = s.Description
	}
	return b, true
}

// LoadBuiltin parses and validates an embedded scenario by name.
func LoadBuiltin(name string) (*Scenario, error) {
	b, ok := lookupBuiltin(name)
	if !ok {
		return nil, fmt.Errorf("no built-in scenario %q (see `meshbench scenarios list`)", name)
	}
	s, err := Parse("builtin:"+name, b.Source)
	if err != nil {
		return nil, err
	}
	return s, s.Validate()
}

// IsBuiltin reports whether name is an embedded scenario.
func IsBuiltin(name string) bool {
	_, ok := lookupBuiltin(name)
	return ok
}
