package webhook

import (
	"context"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/meshguard/meshguard/policy"
)

// TestViewsInvalidation: a watched view is reused until a change in its namespace is
// reported, and only that namespace's view is rebuilt.
func TestViewsInvalidation(t *testing.T) {
	ctx := context.Background()
	s := scheme(t)
	first := object(t, s, "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: a, namespace: shop}\nspec: {}\n")
	other := object(t, s, "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: x, namespace: other}\nspec: {}\n")
	reader := fake.NewClientBuilder().WithScheme(s).WithObjects(first, other).Build()
	v := NewViews(reader)
	v.watched.Store(true) // as Watch does, without informers: changes are reported by hand
	count := func(ns string) int {
		t.Helper()
		view, err := v.namespace(ctx, ns)
		if err != nil {
			t.Fatal(err)
		}
		return len(view.RequestAuthentications(ns))
	}
	if count("shop") != 1 || count("other") != 1 {
		t.Fatal("views do not hold the cache's objects")
	}
	otherView, _ := v.namespace(ctx, "other")
	second := object(t, s, "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: b, namespace: shop}\nspec: {}\n")
	if err := reader.Create(ctx, second); err != nil {
		t.Fatal(err)
	}
	if got := count("shop"); got != 1 {
		t.Errorf("a view was rebuilt with no change reported: %d objects", got)
	}
	v.changed(second)
	if got := count("shop"); got != 2 {
		t.Errorf("after a reported change: %d objects, want 2", got)
	}
	if again, _ := v.namespace(ctx, "other"); again != otherView {
		t.Error("a change in one namespace rebuilt another's view")
	}
	// Unwatched views are never kept.
	u := NewViews(reader)
	a, _ := u.namespace(ctx, "shop")
	b, _ := u.namespace(ctx, "shop")
	if a == b {
		t.Error("an unwatched view was kept")
	}
}

// TestSettingsInvalidation: merged guardrails are reused until a MeshGuardrail or Namespace
// change is reported, and a namespace not yet in the cache is judged by its name.
func TestSettingsInvalidation(t *testing.T) {
	ctx := context.Background()
	s := scheme(t)
	reader := fake.NewClientBuilder().WithScheme(s).Build()
	v := NewViews(reader)
	v.watched.Store(true)
	coverage := func() *policy.Coverage {
		t.Helper()
		settings, err := v.settingsOf(ctx, "shop")
		if err != nil {
			t.Fatal(err)
		}
		return settings.Coverage
	}
	if coverage() != nil {
		t.Fatal("coverage with no guardrail")
	}
	rail := object(t, s, "apiVersion: meshguard.io/v1alpha1\nkind: MeshGuardrail\nmetadata: {name: cover}\n"+
		"spec: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: shop}}, coverage: {required: true, podLabels: {enablesecurity: '{namespace}'}}}\n")
	if err := reader.Create(ctx, rail); err != nil {
		t.Fatal(err)
	}
	if coverage() != nil {
		t.Error("settings were merged again with no change reported")
	}
	v.settingsChanged(rail)
	if c := coverage(); c == nil || c.Labels["enablesecurity"] != "shop" {
		t.Errorf("after a reported change: coverage %+v", c)
	}
	prod := object(t, s, "apiVersion: meshguard.io/v1alpha1\nkind: MeshGuardrail\nmetadata: {name: prod}\n"+
		"spec: {namespaceSelector: {matchLabels: {env: prod}}, coverage: {required: true, podLabels: {tier: prod}}}\n")
	ns := object(t, s, "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {env: prod}}\n")
	for _, o := range []client.Object{prod, ns} {
		if err := reader.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	v.settingsChanged(ns)
	if c := coverage(); c == nil || c.Labels["tier"] != "prod" || c.Labels["enablesecurity"] != "shop" {
		t.Errorf("the namespace's labels are not read: coverage %+v", c)
	}
}

// TestStoredOnlySecurityPolicies: an old object is looked for in the views only for the
// Istio security kinds; a guardrail or Pod reads no view.
func TestStoredOnlySecurityPolicies(t *testing.T) {
	ctx := context.Background()
	s := scheme(t)
	ra := object(t, s, "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: a, namespace: shop}\nspec: {}\n")
	reader := fake.NewClientBuilder().WithScheme(s).WithObjects(ra).Build()
	st := &liveState{ctx: ctx, reader: reader, views: NewViews(reader)}
	for _, groupKind := range []string{"meshguard.io/MeshGuardrail", "/Pod"} {
		if o := st.stored(groupKind, "shop", "a"); o != nil || len(st.read) > 0 {
			t.Errorf("%s: found %v, read views %v", groupKind, o, st.read)
		}
	}
	if o := st.stored("security.istio.io/RequestAuthentication", "shop", "a"); o == nil || o.GetName() != "a" {
		t.Errorf("the cached RequestAuthentication was not found: %v", o)
	}
}
