package scenarios

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Scenarios hold Kubernetes objects in two lists, policies (SMI, Gateway
// API) and faults (Chaos Mesh): each object is decoded strictly into its
// upstream Go type, chosen by its kind, with meshbench's at: offset beside
// its own fields. This file is what the two lists share.

// objectKind is a kind a list may hold: its apiVersion and Go type.
type objectKind struct {
	apiVersion string
	typ        reflect.Type
}

// objectKinds are a list's kinds, by kind.
type objectKinds map[string]objectKind

// names lists the kinds, sorted.
func (ks objectKinds) names() []string {
	var out []string
	for k := range ks {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// objectMeta is the metadata of a decoded object (a pointer to a struct
// with an ObjectMeta field).
func objectMeta(obj any) *metav1.ObjectMeta {
	return reflect.ValueOf(obj).Elem().FieldByName("ObjectMeta").Addr().Interface().(*metav1.ObjectMeta)
}

// objectKindName is the kind of a decoded object: its Go type's name.
func objectKindName(obj any) string { return reflect.TypeOf(obj).Elem().Name() }

// decodeObject decodes n strictly, as one of kinds (noun names the list
// in errors): at, then the object, every field checked against the Go
// type's JSON names, with positions. It returns a pointer to the object,
// or nil when the decoder reported why not.
func decodeObject(d *decoder, n *yaml.Node, path, noun string, kinds objectKinds, at *Duration) any {
	if n.Kind != yaml.MappingNode {
		d.errs.add(d.at(n), path, "expected a %s object (apiVersion, kind, metadata, spec), got %s", noun, kindName(n))
		return nil
	}
	obj := &yaml.Node{Kind: yaml.MappingNode, Tag: n.Tag, Line: n.Line, Column: n.Column}
	var apiVersion, kind *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		switch key.Value {
		case "at":
			d.value(val, reflect.ValueOf(at).Elem(), join(path, "at"))
			continue
		case "apiVersion":
			apiVersion = val
		case "kind":
			kind = val
		}
		obj.Content = append(obj.Content, key, val)
	}
	if kind == nil || apiVersion == nil {
		d.errs.add(d.at(n), path, "a %s object needs apiVersion and kind (one of %s)", noun, strings.Join(kinds.names(), ", "))
		return nil
	}
	k, ok := kinds[kind.Value]
	if !ok {
		d.errs.add(d.at(kind), join(path, "kind"), "unknown %s kind %q (known: %s)", noun, kind.Value, strings.Join(kinds.names(), ", "))
		return nil
	}
	if apiVersion.Value != k.apiVersion {
		d.errs.add(d.at(apiVersion), join(path, "apiVersion"), "%s is %s in meshbench, not %q", kind.Value, k.apiVersion, apiVersion.Value)
		return nil
	}
	v := reflect.New(k.typ)
	saved := d.tag
	d.tag = "json"
	d.value(obj, v.Elem(), path)
	d.tag = saved
	return v.Interface()
}

// marshalObject writes an object with its at offset, as a scenario holds
// it.
func marshalObject(obj any, at Duration) ([]byte, error) {
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	if at != 0 {
		m["at"] = at.String()
	}
	return json.Marshal(m)
}

// unmarshalObject reads what marshalObject writes, as one of kinds.
func unmarshalObject(data []byte, noun string, kinds objectKinds) (Duration, any, error) {
	var head struct {
		At         Duration `json:"at"`
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return 0, nil, err
	}
	k, ok := kinds[head.Kind]
	if !ok || k.apiVersion != head.APIVersion {
		return 0, nil, fmt.Errorf("unknown %s %s %s", noun, head.APIVersion, head.Kind)
	}
	v := reflect.New(k.typ)
	if err := json.Unmarshal(data, v.Interface()); err != nil { // "at" is not a field: ignored
		return 0, nil, err
	}
	return head.At, v.Interface(), nil
}
