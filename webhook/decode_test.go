package webhook

import (
	"testing"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshguard/meshguard/kinds"
)

// TestDecodeOldFromCache: the old object of a request is the cached one when the
// resourceVersions match, and is decoded from the request otherwise.
func TestDecodeOldFromCache(t *testing.T) {
	cached := &securityv1.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: "require-jwt", Namespace: "shop", ResourceVersion: "7"}}
	ap := kinds.Lookup("security.istio.io", "AuthorizationPolicy")
	stored := func(kind *kinds.Kind, ns, name string) metav1.Object {
		if kind == ap && ns == "shop" && name == "require-jwt" {
			return cached
		}
		return nil
	}
	raw := func(rv string) runtime.RawExtension {
		return runtime.RawExtension{Raw: []byte(`{"apiVersion":"security.istio.io/v1","kind":"AuthorizationPolicy",
			"metadata":{"name":"require-jwt","namespace":"shop","resourceVersion":"` + rv + `"},"spec":{"action":"DENY"}}`)}
	}
	for _, c := range []struct {
		name       string
		rv         string
		stored     storedObject
		fromCache  bool
		wantAction string
	}{
		{"same resourceVersion", "7", stored, true, ""},
		{"the cache is behind", "8", stored, false, "DENY"},
		{"no resourceVersion", "", stored, false, "DENY"},
		{"no cache", "7", nil, false, "DENY"},
	} {
		o, err := decodeOld(ap, raw(c.rv), c.stored)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if (o == metav1.Object(cached)) != c.fromCache {
			t.Errorf("%s: taken from the cache: %v, want %v", c.name, o == metav1.Object(cached), c.fromCache)
		}
		if !c.fromCache && o.(*securityv1.AuthorizationPolicy).Spec.Action.String() != c.wantAction {
			t.Errorf("%s: not decoded from the request: %+v", c.name, o)
		}
	}
	if o, err := decodeOld(ap, runtime.RawExtension{Raw: []byte(`{"metadata":`)}, stored); err == nil {
		t.Errorf("a truncated old object decoded: %+v", o)
	}
}
