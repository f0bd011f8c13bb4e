package kinds

import (
	"reflect"
	"strings"
	"sync"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshguard/meshguard/api/v1alpha1"
	"github.com/meshguard/meshguard/policy"
)

// NewScheme returns a scheme with the API type of every kind of the table.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	// The kinds meshguard reads, and the openreports.io Reports its audit writes.
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, securityv1.AddToScheme, networkingv1.AddToScheme, gatewayv1.Install, v1alpha1.AddToScheme, reportsv1alpha1.Install} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Cached returns the rows the webhook's informer cache watches.
func Cached() []*Kind {
	var rows []*Kind
	for _, k := range All() {
		if k.Cache != NotCached {
			rows = append(rows, k)
		}
	}
	return rows
}

// apiTypes is the scheme the cache's objects are made from.
var apiTypes = sync.OnceValue(func() *runtime.Scheme {
	s, err := NewScheme()
	if err != nil {
		panic(err)
	}
	return s
})

// CacheObject returns an empty object of the kind, and an empty list, as the webhook's
// cache holds them: of the kind's API type, or metadata only. The table is fixed and
// TestTable makes one of every cached row: a type missing from the scheme is a panic.
func (k *Kind) CacheObject() (client.Object, client.ObjectList) {
	gvk := k.Preferred()
	listGVK := gvk.GroupVersion().WithKind(gvk.Kind + "List")
	if k.Cache == MetadataOnly {
		o, l := &metav1.PartialObjectMetadata{}, &metav1.PartialObjectMetadataList{}
		o.SetGroupVersionKind(gvk)
		l.SetGroupVersionKind(listGVK)
		return o, l
	}
	o, err := apiTypes().New(gvk)
	if err != nil {
		panic(err)
	}
	l, err := apiTypes().New(listGVK)
	if err != nil {
		panic(err)
	}
	return o.(client.Object), l.(client.ObjectList)
}

// Keep trims an object as the cache keeps it: no managed fields, and only the
// annotations the rules read of its kind and the object's suppressions; of a kind cached
// as metadata, only identity, age, labels and those annotations.
func (k *Kind) Keep(o metav1.Object) {
	annotations := o.GetAnnotations()
	if p, ok := o.(*metav1.PartialObjectMetadata); ok && k.Cache == MetadataOnly {
		m := p.ObjectMeta
		p.ObjectMeta = metav1.ObjectMeta{
			Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
			CreationTimestamp: m.CreationTimestamp, DeletionTimestamp: m.DeletionTimestamp, Labels: m.Labels,
		}
	}
	o.SetManagedFields(nil)
	var kept map[string]string
	keep := func(a, v string) {
		if kept == nil {
			kept = map[string]string{}
		}
		kept[a] = v
	}
	for _, a := range k.Annotations {
		if v, ok := annotations[a]; ok {
			keep(a, v)
		}
	}
	// An object's suppressions, of any kind: the audit judges the cached copy, and so does
	// the review of a DELETE.
	for a, v := range annotations {
		if strings.HasPrefix(a, policy.SuppressAnnotationPrefix) {
			keep(a, v)
		}
	}
	o.SetAnnotations(kept)
}

// OfCached returns the row of an object the cache holds: by its Go type, or for metadata,
// by the kind it names. nil for objects of no cached kind.
func OfCached(o any) *Kind {
	if p, ok := o.(*metav1.PartialObjectMetadata); ok {
		gvk := p.GroupVersionKind()
		if k := Lookup(gvk.Group, gvk.Kind); k != nil && k.Cache == MetadataOnly {
			return k
		}
		return nil
	}
	return cachedByType()[reflect.TypeOf(o)]
}

// cachedByType maps the Go type of each whole cached kind to its row.
var cachedByType = sync.OnceValue(func() map[reflect.Type]*Kind {
	m := map[reflect.Type]*Kind{}
	for _, k := range Cached() {
		if k.Cache == Whole {
			o, _ := k.CacheObject()
			m[reflect.TypeOf(o)] = k
		}
	}
	return m
})

// PodWorkload is the workload of a Pod read as its metadata (the cache keeps no more),
// pointing at that metadata.
func PodWorkload(pod *metav1.PartialObjectMetadata) *policy.Workload {
	return &policy.Workload{ObjectMeta: &pod.ObjectMeta, Kind: policy.KindPod}
}

// PodWorkloads are the workloads of Pods, as PodWorkload, allocated at once.
func PodWorkloads(pods []*metav1.PartialObjectMetadata) []*policy.Workload {
	backing := make([]policy.Workload, len(pods))
	out := make([]*policy.Workload, len(pods))
	for i, pod := range pods {
		backing[i] = policy.Workload{ObjectMeta: &pod.ObjectMeta, Kind: policy.KindPod}
		out[i] = &backing[i]
	}
	return out
}
