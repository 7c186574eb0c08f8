package scenarios

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	chaosv1alpha1 "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"
)

func TestFaults(t *testing.T) {
	s, err := LoadFile("testdata/valid-faults.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Faults) != 8 {
		t.Fatalf("%d faults, want 8", len(s.Faults))
	}
	if len(s.Probes) != 5 || s.Probes[0].Mode != ProbeContinuous || s.Probes[1].Weight != 1 || s.Probes[1].Max.D() != 50*time.Millisecond {
		t.Errorf("probes decoded as %+v (defaults: mode continuous, weight 1)", s.Probes)
	}
	// The active probes' defaults: GET, status 200, an 800 ms timeout.
	if h := s.Probes[2]; h.Method != "GET" || h.Status != 200 || h.Timeout.D() != MaxProbeTimeout || !h.Active() || s.Probes[0].Active() {
		t.Errorf("http probe decoded as %+v", h)
	}
	if p := s.Probes[3]; p.Labels["response_code"] != "503" || !p.Rate || p.Comparator == nil || p.Comparator.Value != "5" {
		t.Errorf("prometheus probe decoded as %+v", p)
	}
	if c := s.Probes[4]; len(c.Command) != 1 || c.Comparator == nil || c.Comparator.Criteria != "matches" {
		t.Errorf("command probe decoded as %+v", c)
	}
	delay := s.Faults[0].Object.(*chaosv1alpha1.NetworkChaos)
	if f := s.Faults[0]; f.At.D() != 5*time.Second || delay.Spec.Delay.Latency != "100ms" || delay.Spec.Delay.Correlation != "25" ||
		delay.Spec.Selector.LabelSelectors[FaultLabel] != "back" {
		t.Errorf("delay decoded as at %s, %+v", f.At, delay.Spec)
	}
	if d, ok := s.Faults[0].Duration(); !ok || d != 10*time.Second {
		t.Errorf("delay lasts %s (%v), want 10s", d, ok)
	}
	if _, ok := s.Faults[2].Duration(); ok {
		t.Errorf("pod-kill has a duration; it is one-shot")
	}
	partition := s.Faults[1].Object.(*chaosv1alpha1.NetworkChaos)
	if got := SelectWorkloads(partition.Spec.Target, []Pod{{"client", "client"}, {"front", "front"}, {"back", "back"}}); !reflect.DeepEqual(got, []string{"back"}) {
		t.Errorf("partition target selects %v, want [back]", got)
	}
	// Inline pointers (a Workflow template's *EmbedChaos) decode.
	wf := s.Faults[6].Object.(*chaosv1alpha1.Workflow)
	if tp := wf.Spec.Templates[1]; tp.EmbedChaos == nil || tp.NetworkChaos == nil || tp.NetworkChaos.Loss.Loss != "30" {
		t.Errorf("workflow template decoded as %+v", tp)
	}
	// Validation defaults a copy: the objects stay as written (kubectl
	// applies them as they are).
	if delay.Spec.Selector.Namespaces != nil || s.Faults[5].Object.(*chaosv1alpha1.Schedule).Spec.ConcurrencyPolicy != "Forbid" {
		t.Errorf("validation changed the objects: %+v", delay.Spec.Selector)
	}
	data, err := json.Marshal(s.Faults)
	if err != nil {
		t.Fatal(err)
	}
	var back []Fault
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s.Faults) {
		t.Errorf("JSON round trip changed the faults:\n%s", data)
	}
}

func TestJSONPath(t *testing.T) {
	typ := reflect.TypeFor[*chaosv1alpha1.NetworkChaos]()
	for in, want := range map[string]string{
		"Spec.TcParameter.Delay.Latency": "spec.delay.latency",
		"Spec.PodSelector.value":         "spec.value",
		"Spec.direction":                 "spec.direction",
		"Spec.Target.Selector.Pods":      "spec.target.selector.pods",
		"Spec.ExternalTargets[1]":        "spec.externalTargets[1]",
	} {
		if got := jsonPath(typ, in); got != want {
			t.Errorf("jsonPath(%q) = %q, want %q", in, got, want)
		}
	}
	wf := reflect.TypeFor[*chaosv1alpha1.Workflow]()
	if got := jsonPath(wf, "Spec.Templates[2].EmbedChaos.PodChaos.Duration"); got != "spec.templates[2].podChaos.duration" {
		t.Errorf("workflow path: %q", got)
	}
}

// TestFaultKindsDecodeEveryField fills every field of every fault kind
// (through its JSON form) and decodes it as a scenario's: the decoder
// knows every Go type the objects hold, and nothing crashes it.
func TestFaultKindsDecodeEveryField(t *testing.T) {
	for _, kind := range FaultKinds() {
		v := reflect.New(faultKinds[kind].typ)
		fill(v.Elem(), 0)
		data, err := json.Marshal(v.Interface())
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		m["apiVersion"], m["kind"] = FaultAPIVersion, kind
		data, _ = json.Marshal(map[string]any{"faults": []any{m}})
		var doc struct {
			Faults []Fault `yaml:"faults"`
		}
		// JSON is YAML: decoded as a scenario's list holds it.
		_, err = decodeStrict(kind+".json", data, &doc)
		if err != nil || len(doc.Faults) != 1 || doc.Faults[0].Object == nil {
			t.Errorf("%s: decoded %+v: %v", kind, doc.Faults, err)
			continue
		}
		tm := v.Elem().FieldByName("TypeMeta")
		tm.FieldByName("APIVersion").SetString(FaultAPIVersion)
		tm.FieldByName("Kind").SetString(kind)
		got, _ := json.Marshal(doc.Faults[0].Object)
		want, _ := json.Marshal(v.Interface())
		if string(got) != string(want) {
			i := 0
			for i < min(len(got), len(want)) && got[i] == want[i] {
				i++
			}
			t.Errorf("%s: decoded differs from what was written, from byte %d:\n%.200s\n%.200s", kind, i, got[max(i-100, 0):], want[max(i-100, 0):])
		}
	}
}

// fill sets every settable field of v to a sample value, to a depth.
func fill(v reflect.Value, depth int) {
	if depth > 6 {
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.Type().Elem().Kind() == reflect.Struct && isOpaque(v.Type().Elem()) {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), depth+1)
	case reflect.Struct:
		if isOpaque(v.Type()) {
			return
		}
		for i := 0; i < v.NumField(); i++ {
			// The spec is the user's: metadata and status are Kubernetes'.
			if f := v.Type().Field(i); f.IsExported() && f.Name != "ObjectMeta" && f.Name != "Status" {
				fill(v.Field(i), depth+1)
			}
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(s.Index(0), depth+1)
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, depth+1)
		fill(e, depth+1)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1.5)
	}
}

// TestComparator: numbers compare as numbers, text by contains and
// matches, and what cannot be compared says why.
func TestComparator(t *testing.T) {
	for _, c := range []struct {
		criteria, value, reading string
		want                     bool
		err                      bool
	}{
		{"<=", "5", "5", true, false},
		{"<=", "5", " 5.5\n", false, false},
		{">", "0.5", "1e3", true, false},
		{"==", "200", "200", true, false},
		{"!=", "200", "503", true, false},
		{"contains", "ok", "all ok here", true, false},
		{"matches", "^up [0-9]+$", "up 12", true, false},
		{"matches", "^up$", "down", false, false},
		{">=", "1", "many", false, true},
	} {
		got, err := Comparator{Criteria: c.criteria, Value: c.value}.Compare(c.reading)
		if got != c.want || (err != nil) != c.err {
			t.Errorf("%q %s %q: %v, %v; want %v (error: %v)", c.reading, c.criteria, c.value, got, err, c.want, c.err)
		}
	}
}
