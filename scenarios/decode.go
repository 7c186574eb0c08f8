package scenarios

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The decoder below is strict where yaml.v3's KnownFields is not enough: it
// reports every unknown field, wrong type and missing required field in one
// pass, each with its line, column and field path, and it records where each
// field was so that later (semantic) validation can point at the same place.

// scalarDecoder is implemented by field types that parse themselves from a
// YAML scalar (durations, byte sizes).
type scalarDecoder interface {
	decodeScalar(value, tag string) error
}

// nodeDecoder is implemented by field types that decode a YAML node
// themselves, with the decoder at hand for positions, errors and the
// fields inside (policy objects, whose Go type their kind decides).
type nodeDecoder interface {
	decodeNode(d *decoder, n *yaml.Node, path string)
}

type decoder struct {
	file string
	errs ErrorList
	pos  map[string]Position
	// tag is the struct tag field names come from: "yaml" for meshbench's
	// own types, "json" inside Kubernetes objects (whose Go types have
	// only JSON tags, and inline embedded structs).
	tag string
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserProblems are yaml.v3's parser errors, reported at a context line.
var parserProblems = []string{
	"did not find expected key",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected '-' indicator",
	"did not find expected node content",
	"did not find expected <document start>",
}

// decodeStrict parses data into out (a pointer to a struct) and returns the
// positions of every field it saw, keyed by field path.
func decodeStrict(file string, data []byte, out any) (map[string]Position, error) {
	d := &decoder{file: file, pos: map[string]Position{}, tag: "yaml"}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err.Error() == "EOF" {
			d.errs.add(Position{File: file, Line: 1}, "", "empty scenario")
			return nil, d.errs.err()
		}
		return nil, d.syntaxError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		d.errs.add(d.at(&extra), "", "a scenario file holds one YAML document; found a second one")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	d.pos[""] = d.at(root)
	d.value(root, reflect.ValueOf(out).Elem(), "")
	return d.pos, d.errs.err()
}

func (d *decoder) syntaxError(err error) error {
	msg := err.Error()
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = "invalid YAML: " + m[2]
		// yaml.v3 reports parser (not scanner) errors with a 0-based line
		// number; make it 1-based like every other position.
		for _, p := range parserProblems {
			if m[2] == p {
				line++
			}
		}
	} else {
		msg = "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")
	}
	d.errs.add(Position{File: d.file, Line: line}, "", "%s", msg)
	return d.errs.err()
}

func (d *decoder) at(n *yaml.Node) Position {
	return Position{File: d.file, Line: n.Line, Column: n.Column}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		case "!!int", "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "an unsupported YAML node"
}

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	d.pos[path] = d.at(n)
	if nd, ok := v.Addr().Interface().(nodeDecoder); ok {
		nd.decodeNode(d, n, path)
		return
	}
	if u, ok := v.Addr().Interface().(json.Unmarshaler); ok && d.tag == "json" && (v.Kind() != reflect.Struct || isOpaque(v.Type())) {
		d.unmarshalJSON(n, u, path)
		return
	}
	if sd, ok := v.Addr().Interface().(scalarDecoder); ok {
		if n.Kind != yaml.ScalarNode {
			d.errs.add(d.at(n), path, "expected a scalar, got %s", kindName(n))
			return
		}
		if err := sd.decodeScalar(n.Value, n.ShortTag()); err != nil {
			d.errs.add(d.at(n), path, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer: // an optional section
		e := reflect.New(v.Type().Elem())
		d.value(n, e.Elem(), path)
		v.Set(e)
	case reflect.Struct:
		d.structValue(n, v, path)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 && d.tag == "json" {
			// []byte: base64 text, as encoding/json (and kubectl) has it.
			if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
				v.SetBytes(nil)
				return
			}
			b, err := base64.StdEncoding.DecodeString(n.Value)
			if n.Kind != yaml.ScalarNode || err != nil {
				d.errs.add(d.at(n), path, "expected base64 text, got %s", kindName(n))
				return
			}
			v.SetBytes(b)
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.errs.add(d.at(n), path, "expected a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.value(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			d.errs.add(d.at(n), path, "expected a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Map:
		if n.Kind != yaml.MappingNode || v.Type().Key().Kind() != reflect.String {
			d.errs.add(d.at(n), path, "expected a mapping, got %s", kindName(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			e := reflect.New(v.Type().Elem()).Elem()
			d.value(val, e, join(path, key.Value))
			m.SetMapIndex(reflect.ValueOf(key.Value).Convert(v.Type().Key()), e)
		}
		v.Set(m)
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Int16, reflect.Int8:
		i, err := strconv.ParseInt(n.Value, 0, v.Type().Bits())
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || err != nil {
			d.errs.add(d.at(n), path, "expected an integer, got %s", kindName(n))
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint64, reflect.Uint32, reflect.Uint16, reflect.Uint8:
		u, err := strconv.ParseUint(n.Value, 0, v.Type().Bits())
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || err != nil {
			d.errs.add(d.at(n), path, "expected a non-negative integer (at most %d bits), got %s", v.Type().Bits(), kindName(n))
			return
		}
		v.SetUint(u)
	case reflect.Float64, reflect.Float32:
		f, err := strconv.ParseFloat(n.Value, v.Type().Bits())
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") || err != nil {
			d.errs.add(d.at(n), path, "expected a number, got %s", kindName(n))
			return
		}
		v.SetFloat(f)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			d.errs.add(d.at(n), path, "expected true or false, got %s", kindName(n))
			return
		}
		v.SetBool(n.Value == "true")
	default:
		// A Go type no scenario field had when this was written (an
		// upstream type grew one): an error, never a crash.
		d.errs.add(d.at(n), path, "meshbench cannot read a value of Go type %s here", v.Type())
	}
}

type fieldInfo struct {
	index    []int
	name     string
	required bool
}

// structFields lists t's fields by the names tag gives them. With JSON
// tags, embedded structs (or pointers to them) that are inline
// (",inline", or anonymous with no name) contribute their own fields, as
// encoding/json decodes them.
func structFields(t reflect.Type, tag string) []fieldInfo {
	var out []fieldInfo
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		parts := strings.Split(f.Tag.Get(tag), ",")
		name := parts[0]
		if et := f.Type; tag == "json" && f.Anonymous && name == "" && (et.Kind() == reflect.Struct || et.Kind() == reflect.Pointer && et.Elem().Kind() == reflect.Struct && f.IsExported()) {
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			for _, inner := range structFields(et, tag) {
				inner.index = append([]int{i}, inner.index...)
				out = append(out, inner)
			}
			continue
		}
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		out = append(out, fieldInfo{index: []int{i}, name: name, required: f.Tag.Get("mb") == "required"})
	}
	return out
}

func (d *decoder) structValue(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errs.add(d.at(n), path, "expected a mapping, got %s", kindName(n))
		return
	}
	fields := structFields(v.Type(), d.tag)
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		fp := join(path, key.Value)
		// Of fields with the same name (one inline in another), the
		// shallowest is the field, as encoding/json has it.
		var f *fieldInfo
		for j := range fields {
			if fields[j].name == key.Value && (f == nil || len(fields[j].index) < len(f.index)) {
				f = &fields[j]
			}
		}
		switch {
		case f == nil:
			d.errs.add(d.at(key), fp, "unknown field%s", suggest(key.Value, fields))
		case seen[key.Value]:
			d.errs.add(d.at(key), fp, "duplicate field (first set at line %d)", d.pos[fp].Line)
		default:
			seen[key.Value] = true
			d.value(val, fieldAlloc(v, f.index), fp)
		}
	}
	for _, f := range fields {
		if f.required && !seen[f.name] {
			d.errs.add(d.at(n), join(path, f.name), "missing required field")
		}
	}
}

// fieldAlloc is v.FieldByIndex(index), allocating the embedded structs
// on the way that are nil pointers (Chaos Mesh's *EmbedChaos).
func fieldAlloc(v reflect.Value, index []int) reflect.Value {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// suggest names the known field closest to a misspelled one, if any is close.
func suggest(name string, fields []fieldInfo) string {
	best, bestDist := "", 3
	for _, f := range fields {
		if dist := editDistance(strings.ToLower(name), strings.ToLower(f.name)); dist < bestDist {
			best, bestDist = f.name, dist
		}
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return fmt.Sprintf(" (known fields: %s)", strings.Join(names, ", "))
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// isOpaque says a struct type decodes itself from JSON in a way its fields
// do not show (metav1.Time, resource.Quantity): such values are decoded
// by their UnmarshalJSON, not walked.
func isOpaque(t reflect.Type) bool {
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).IsExported() && t.Field(i).Tag.Get("json") != "" {
			return false
		}
	}
	return true
}

// unmarshalJSON decodes n through the type's own UnmarshalJSON, reporting
// its error at n.
func (d *decoder) unmarshalJSON(n *yaml.Node, u json.Unmarshaler, path string) {
	var v any
	if err := n.Decode(&v); err != nil {
		d.errs.add(d.at(n), path, "%v", err)
		return
	}
	data, err := json.Marshal(v)
	if err == nil {
		err = u.UnmarshalJSON(data)
	}
	if err != nil {
		d.errs.add(d.at(n), path, "%v", err)
	}
}
