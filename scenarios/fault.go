package scenarios

import (
	"fmt"
	"reflect"
	"time"

	chaosv1alpha1 "github.com/chaos-mesh/chaos-mesh/api/v1alpha1"
	"go.yaml.in/yaml/v3"
)

// FaultAPIVersion is the apiVersion of every fault object: Chaos Mesh's.
const FaultAPIVersion = "chaos-mesh.org/v1alpha1"

// Fault kinds a scenario may hold, decoded into Chaos Mesh's own types,
// so that a scenario's faults are objects kubectl can apply unchanged to
// a cluster running Chaos Mesh.
var faultKinds = objectKinds{
	chaosv1alpha1.KindPodChaos:     {FaultAPIVersion, reflect.TypeFor[chaosv1alpha1.PodChaos]()},
	chaosv1alpha1.KindNetworkChaos: {FaultAPIVersion, reflect.TypeFor[chaosv1alpha1.NetworkChaos]()},
	chaosv1alpha1.KindHTTPChaos:    {FaultAPIVersion, reflect.TypeFor[chaosv1alpha1.HTTPChaos]()},
	chaosv1alpha1.KindStressChaos:  {FaultAPIVersion, reflect.TypeFor[chaosv1alpha1.StressChaos]()},
	chaosv1alpha1.KindSchedule:     {FaultAPIVersion, reflect.TypeFor[chaosv1alpha1.Schedule]()},
	chaosv1alpha1.KindWorkflow:     {FaultAPIVersion, reflect.TypeFor[chaosv1alpha1.Workflow]()},
}

// FaultKinds lists the fault kinds scenarios know, sorted.
func FaultKinds() []string { return faultKinds.names() }

// Fault is one Chaos Mesh object of a scenario and when it starts, from
// the start of the measured window. How long it lasts is the object's
// own duration (none: to the window's end).
type Fault struct {
	At Duration
	// Object is a pointer to the decoded object: *chaosv1alpha1.PodChaos,
	// NetworkChaos, HTTPChaos, StressChaos, Schedule or Workflow.
	Object any
}

// Kind returns the object's kind.
func (f Fault) Kind() string { return objectKindName(f.Object) }

// Name returns the object's name.
func (f Fault) Name() string { return objectMeta(f.Object).Name }

// Key is the object's identity among the scenario's faults.
func (f Fault) Key() string { return f.Kind() + "/" + f.Name() }

// Duration is how long the fault lasts once started; ok is false for a
// fault that lasts to the window's end (no duration), for one-shot
// actions (pod-kill, container-kill), which have no length, and for a
// Schedule or a Workflow (see runner/chaos).
func (f Fault) Duration() (d time.Duration, ok bool) {
	obj, isChaos := f.Object.(chaosv1alpha1.GenericChaos)
	if !isChaos {
		return 0, false
	}
	d, err := ChaosDuration(obj)
	return d, err == nil && d > 0
}

// ChaosDuration is how long a chaos object of an executable kind lasts: 0
// for a one-shot action (pod-kill, container-kill), -1 when it sets no
// duration (it lasts to the window's end).
func ChaosDuration(obj chaosv1alpha1.GenericChaos) (time.Duration, error) {
	var d *string
	switch o := obj.(type) {
	case *chaosv1alpha1.PodChaos:
		if o.IsOneShot() {
			return 0, nil
		}
		d = o.Spec.Duration
	case *chaosv1alpha1.NetworkChaos:
		d = o.Spec.Duration
	case *chaosv1alpha1.HTTPChaos:
		d = o.Spec.Duration
	case *chaosv1alpha1.StressChaos:
		d = o.Spec.Duration
	default:
		return 0, fmt.Errorf("%T is not an executable chaos kind", obj)
	}
	if d == nil {
		return -1, nil
	}
	return time.ParseDuration(*d)
}

// decodeNode decodes a fault strictly: at, then the object by its kind.
func (f *Fault) decodeNode(d *decoder, n *yaml.Node, path string) {
	f.Object = decodeObject(d, n, path, "fault", faultKinds, &f.At)
}

// MarshalJSON writes the object with its at offset, as a scenario holds it.
func (f Fault) MarshalJSON() ([]byte, error) { return marshalObject(f.Object, f.At) }

// UnmarshalJSON reads what MarshalJSON writes.
func (f *Fault) UnmarshalJSON(data []byte) (err error) {
	f.At, f.Object, err = unmarshalObject(data, "fault", faultKinds)
	return err
}
