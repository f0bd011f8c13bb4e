package kinds

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/policy"
)

// TestTable: every cached row makes its cache object and list; every row decodes, and is
// found by its group and kind.
func TestTable(t *testing.T) {
	for _, k := range All() {
		if Lookup(k.Group, k.Kind) != k {
			t.Errorf("%s: not found by its group and kind", k)
		}
		if k.Cache != NotCached {
			o, l := k.CacheObject()
			if o.GetObjectKind().GroupVersionKind().Kind != k.Kind && k.Cache == MetadataOnly || l == nil {
				t.Errorf("%s: cache object %T, list %T", k, o, l)
			}
		}
		if k.Cache == NotCached && (k.Validate != nil || k.Mutate != nil) {
			t.Errorf("%s: reviewed but not cached: its old object and its context are not in the cache", k)
		}
	}
}

// TestKeep: the cache keeps of a Pod's metadata its identity, age, labels and the
// annotations the rules read, and of a policy all but its managed fields and other
// annotations; of every kind, the suppressions an object carries (the audit judges the
// cached copy, and so does a DELETE's review).
func TestKeep(t *testing.T) {
	annotations := map[string]string{
		policy.SidecarInjectLabel: "false", policy.ExcludeInboundAnnotation: "8080", policy.CoverageAnnotation: policy.CoverageExempt,
		"sidecar.istio.io/status": `{"initContainers":["istio-proxy"]}`, policy.DryRunAnnotation: "true",
		"kubectl.kubernetes.io/last-applied-configuration": "{}",
		policy.SuppressAnnotationPrefix + "MG301":          "the gateway requires tokens",
	}
	full := metav1.ObjectMeta{
		Name: "web-1", Namespace: "shop", UID: "u1", ResourceVersion: "9", Labels: map[string]string{"app": "web"},
		Annotations:     annotations,
		OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-1"}},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
	}
	pod := &metav1.PartialObjectMetadata{ObjectMeta: *full.DeepCopy()}
	Lookup("", "Pod").Keep(pod)
	want := metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "u1", ResourceVersion: "9", Labels: map[string]string{"app": "web"},
		Annotations: map[string]string{policy.SidecarInjectLabel: "false", policy.ExcludeInboundAnnotation: "8080", policy.CoverageAnnotation: policy.CoverageExempt,
			policy.SuppressAnnotationPrefix + "MG301": "the gateway requires tokens"}}
	if pod.Name != want.Name || pod.UID != want.UID || !maps.Equal(pod.Labels, want.Labels) || !maps.Equal(pod.Annotations, want.Annotations) ||
		pod.OwnerReferences != nil || pod.ManagedFields != nil {
		t.Errorf("Pod kept %+v, want %+v", pod.ObjectMeta, want)
	}
	ap := &securityv1.AuthorizationPolicy{ObjectMeta: *full.DeepCopy()}
	Lookup("security.istio.io", "AuthorizationPolicy").Keep(ap)
	if !maps.Equal(ap.Annotations, map[string]string{policy.DryRunAnnotation: "true", policy.SuppressAnnotationPrefix + "MG301": "the gateway requires tokens"}) || ap.ManagedFields != nil || ap.OwnerReferences == nil {
		t.Errorf("AuthorizationPolicy kept %+v", ap.ObjectMeta)
	}
	svc := Lookup("", "Service")
	if len(svc.Annotations) != 0 {
		t.Errorf("no rule reads a Service's annotations; the table keeps %v", svc.Annotations)
	}
}

// TestInstalled: a cluster without the Gateway API is served without Gateways; one
// without Istio's CRDs is waited for.
func TestInstalled(t *testing.T) {
	mapper := func(skip string) meta.RESTMapper {
		m := meta.NewDefaultRESTMapper(nil)
		for _, k := range Cached() {
			if k.Kind != skip {
				scope := meta.RESTScopeNamespace
				if k.ClusterScoped {
					scope = meta.RESTScopeRoot
				}
				m.Add(k.Preferred(), scope)
			}
		}
		return m
	}
	all, err := Installed(mapper(""))
	if err != nil || len(all) != len(Cached()) {
		t.Errorf("every kind served: %d of %d (%v)", len(all), len(Cached()), err)
	}
	noGateways, err := Installed(mapper("Gateway"))
	if err != nil || len(noGateways) != len(Cached())-1 || slices.Contains(noGateways, Lookup("gateway.networking.k8s.io", "Gateway")) {
		t.Errorf("without the Gateway API: %v (%v)", noGateways, err)
	}
	if _, err := Installed(mapper(policy.KindAuthorizationPolicy)); err == nil || !strings.Contains(err.Error(), "AuthorizationPolicy.security.istio.io") {
		t.Errorf("without Istio's AuthorizationPolicy: %v", err)
	}
	// Istio's CRDs installed after meshguard: it waits, then watches.
	var asked int
	late := meta.MultiRESTMapper{mapper(policy.KindAuthorizationPolicy)}
	got, err := WaitInstalled(context.Background(), &late, time.Millisecond, func(error) {
		if asked++; asked == 3 {
			late = meta.MultiRESTMapper{mapper("")}
		}
	})
	if err != nil || len(got) != len(Cached()) || asked != 3 {
		t.Errorf("CRDs installed late: %d kinds after %d tries (%v)", len(got), asked, err)
	}
	for _, k := range Cached() {
		o, _ := k.CacheObject()
		if OfCached(o) != k {
			t.Errorf("%s: the cache's %T is not known as it", k, o)
		}
	}
}
