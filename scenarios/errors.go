package scenarios

import (
	"fmt"
	"sort"
	"strings"
)

// Position is a place in a scenario file; Line and Column are 1-based and
// zero when unknown.
type Position struct {
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
}

// String renders the position the way compilers do: file:line:column.
func (p Position) String() string {
	s := p.File
	if s == "" {
		s = "<input>"
	}
	if p.Line > 0 {
		s += fmt.Sprintf(":%d", p.Line)
		if p.Column > 0 {
			s += fmt.Sprintf(":%d", p.Column)
		}
	}
	return s
}

// FieldError is one problem in a scenario, at a position and a field path
// such as "load.qps" or "meshes[1].mode".
type FieldError struct {
	Pos  Position
	Path string
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("%s: %s", e.Pos, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.Pos, e.Path, e.Msg)
}

// ErrorList is every problem found in a scenario, in file order. Loading and
// validation collect all of them rather than stopping at the first, so that a
// user fixes a file in one pass.
type ErrorList []*FieldError

func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

func (l *ErrorList) add(pos Position, path, format string, args ...any) {
	*l = append(*l, &FieldError{Pos: pos, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// err returns the list sorted by position, or nil when it is empty, so that
// callers can return it as an error without a typed-nil surprise.
func (l ErrorList) err() error {
	if len(l) == 0 {
		return nil
	}
	sort.SliceStable(l, func(i, j int) bool {
		if l[i].Pos.Line != l[j].Pos.Line {
			return l[i].Pos.Line < l[j].Pos.Line
		}
		return l[i].Pos.Column < l[j].Pos.Column
	})
	return l
}
