package webhook

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshguard/meshguard/kinds"
)

// decode reads a request's object through the kinds table, as the API server sent it.
func decode(kind *kinds.Kind, raw runtime.RawExtension) (metav1.Object, error) {
	if len(raw.Raw) == 0 {
		return nil, nil
	}
	o, err := kind.Decode(raw.Raw, kinds.Admission)
	if err != nil {
		return nil, fmt.Errorf("meshguard cannot read this %s: %w", kind.Kind, err)
	}
	return o, nil
}

// storedObject returns the cached object of a kind by namespace and name, or nil.
type storedObject func(kind *kinds.Kind, namespace, name string) metav1.Object

// decodeOld reads the old object of an UPDATE or DELETE. That is nearly always the object
// the cache holds, at the same resourceVersion: then the cached one is taken, already
// decoded, and only the old object's metadata is read.
func decodeOld(kind *kinds.Kind, raw runtime.RawExtension, stored storedObject) (metav1.Object, error) {
	if len(raw.Raw) > 0 && stored != nil {
		ns, name, rv, err := kinds.Identity(raw.Raw)
		if err == nil && rv != "" {
			if o := stored(kind, ns, name); o != nil && o.GetResourceVersion() == rv {
				return o, nil
			}
		}
	}
	return decode(kind, raw)
}
