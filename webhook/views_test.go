package webhook

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/meshguard/meshguard/kinds"
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
		view, err := v.view(ctx, viewKey{ns, policiesView})
		if err != nil {
			t.Fatal(err)
		}
		return len(view.RequestAuthentications(ns))
	}
	if count("shop") != 1 || count("other") != 1 {
		t.Fatal("views do not hold the cache's objects")
	}
	otherView, _ := v.view(ctx, viewKey{"other", policiesView})
	second := object(t, s, "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: b, namespace: shop}\nspec: {}\n")
	if err := reader.Create(ctx, second); err != nil {
		t.Fatal(err)
	}
	if got := count("shop"); got != 1 {
		t.Errorf("a view was rebuilt with no change reported: %d objects", got)
	}
	v.changed(policiesView, second)
	if got := count("shop"); got != 2 {
		t.Errorf("after a reported change: %d objects, want 2", got)
	}
	if again, _ := v.view(ctx, viewKey{"other", policiesView}); again != otherView {
		t.Error("a change in one namespace rebuilt another's view")
	}
	// Unwatched views are never kept.
	u := NewViews(reader)
	a, _ := u.view(ctx, viewKey{"shop", policiesView})
	b, _ := u.view(ctx, viewKey{"shop", policiesView})
	if a == b {
		t.Error("an unwatched view was kept")
	}
}

// TestViewsKeptOverPodChanges: a Pod's changes never drop its namespace's policies view,
// which a Pod's review reads. A Pod update that changes nothing the cache keeps but the
// resourceVersion (a status change) keeps the workloads view too; one that changes what
// the cache keeps drops it. Any update of a policy drops the policies view.
func TestViewsKeptOverPodChanges(t *testing.T) {
	ctx := context.Background()
	s := scheme(t)
	ra := object(t, s, "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: a, namespace: shop, resourceVersion: '1'}\nspec: {}\n")
	v := NewViews(fake.NewClientBuilder().WithScheme(s).WithObjects(ra).Build())
	v.watched.Store(true)
	view := func(part viewPart) *policy.Snapshot {
		t.Helper()
		s, err := v.view(ctx, viewKey{"shop", part})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	pod := func(version string, labels map[string]string) *metav1.PartialObjectMetadata {
		return &metav1.PartialObjectMetadata{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "shop", ResourceVersion: version, Labels: labels},
		}
	}
	created, running, relabelled := pod("1", map[string]string{"app": "a"}), pod("2", map[string]string{"app": "a"}), pod("3", map[string]string{"app": "b"})
	policies, workloads := view(policiesView), view(workloadsView)
	podChanges := v.changes(workloadsView)
	podChanges.OnUpdate(created, running)
	if view(workloadsView) != workloads {
		t.Error("a Pod's status change dropped its namespace's workloads view")
	}
	if created.ResourceVersion != "1" || running.ResourceVersion != "2" {
		t.Error("comparing the Pods changed the cached objects")
	}
	podChanges.OnUpdate(running, relabelled)
	podChanges.OnAdd(pod("4", nil), false)
	podChanges.OnDelete(relabelled)
	if view(workloadsView) == workloads {
		t.Error("a Pod's label change kept its namespace's workloads view")
	}
	if view(policiesView) != policies {
		t.Error("a Pod's change dropped its namespace's policies view")
	}
	newer := ra.DeepCopyObject().(client.Object)
	newer.SetResourceVersion("2")
	v.changes(policiesView).OnUpdate(ra, newer)
	if view(policiesView) == policies {
		t.Error("an update of a RequestAuthentication kept its namespace's policies view")
	}
}

// BenchmarkViewsAfterPodUpdate: the views of a namespace read after one of its Pods was
// updated, over informer stores, by the size of the namespace. The policies view (what a
// Pod's review reads) is kept; a status change keeps the workloads view (what a policy's
// review reads) too; a label change rebuilds it, at a cost that grows with the namespace.
func BenchmarkViewsAfterPodUpdate(b *testing.B) {
	ctx := context.Background()
	for _, pods := range []int{20, 1000, 5000} {
		v, podStore := storedViews()
		for i := range pods {
			p := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
				Name: "p" + strconv.Itoa(i), Namespace: "shop", ResourceVersion: "1",
				Labels: map[string]string{"app": "app" + strconv.Itoa(i%50), "version": "v1"},
			}}
			if err := podStore.Add(p); err != nil {
				b.Fatal(err)
			}
		}
		podChanges := v.changes(workloadsView)
		relabel := []map[string]string{{"app": "app0", "version": "v2"}, {"app": "app0", "version": "v1"}}
		for _, change := range []string{"status", "labels"} {
			for _, part := range []viewPart{policiesView, workloadsView} {
				name := map[viewPart]string{policiesView: "policies", workloadsView: "workloads"}[part]
				b.Run(fmt.Sprintf("%s/%s/pods=%d", change, name, pods), func(b *testing.B) {
					obj, _, _ := podStore.GetByKey("shop/p0")
					old := obj.(*metav1.PartialObjectMetadata)
					key := viewKey{"shop", part}
					if _, err := v.view(ctx, key); err != nil {
						b.Fatal(err)
					}
					n := 0
					for b.Loop() {
						n++
						updated := old.DeepCopy()
						updated.ResourceVersion = strconv.Itoa(n + 1)
						if change == "labels" {
							updated.Labels = relabel[n%2]
						}
						if err := podStore.Update(updated); err != nil {
							b.Fatal(err)
						}
						podChanges.OnUpdate(old, updated)
						if _, err := v.view(ctx, key); err != nil {
							b.Fatal(err)
						}
						old = updated
					}
				})
			}
		}
	}
}

// storedViews returns watched views over empty informer stores, as Watch sets them up, and
// the store of Pods.
func storedViews() (*Views, toolscache.Indexer) {
	v := NewViews(nil)
	v.stores = make([]toolscache.Indexer, len(viewedKinds))
	for i := range viewedKinds {
		v.stores[i] = toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc,
			toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc})
	}
	v.watched.Store(true)
	return v, v.stores[podKind]
}

// TestWorkloadsEverywhere: a mesh-wide policy selects the Pods of every namespace that carry
// its labels, read from the Pod informer's store, and the same when read from a reader.
func TestWorkloadsEverywhere(t *testing.T) {
	ctx := context.Background()
	pod := func(ns, name string, labels map[string]string) *metav1.PartialObjectMetadata {
		return &metav1.PartialObjectMetadata{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		}
	}
	pods := []*metav1.PartialObjectMetadata{
		pod("shop", "web-1", map[string]string{"app": "web", "version": "v1"}),
		pod("shop", "db-1", map[string]string{"app": "db"}),
		pod("blog", "web-2", map[string]string{"app": "web"}),
		pod("blog", "bare", nil),
	}
	stored, podStore := storedViews()
	builder := fake.NewClientBuilder().WithScheme(scheme(t))
	for _, p := range pods {
		if err := podStore.Add(p); err != nil {
			t.Fatal(err)
		}
		builder = builder.WithObjects(p.DeepCopy())
	}
	listed := NewViews(builder.Build())
	for _, c := range []struct {
		match map[string]string
		want  []string
	}{
		{map[string]string{"app": "web"}, []string{"blog/web-2", "shop/web-1"}},
		{map[string]string{"app": "web", "version": "v1"}, []string{"shop/web-1"}},
		{map[string]string{"app": "cache"}, nil},
		{nil, []string{"blog/bare", "blog/web-2", "shop/db-1", "shop/web-1"}},
	} {
		for name, v := range map[string]*Views{"store": stored, "reader": listed} {
			ws, err := v.workloadsEverywhere(ctx, c.match)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range ws {
				got = append(got, w.Namespace+"/"+w.Name)
			}
			slices.Sort(got)
			if !slices.Equal(got, c.want) {
				t.Errorf("%s, %v: selected %v, want %v", name, c.match, got, c.want)
			}
		}
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
	st := &liveState{ctx: ctx, views: NewViews(reader)}
	for _, kind := range []*kinds.Kind{kinds.Lookup("meshguard.io", "MeshGuardrail"), kinds.Lookup("", "Pod")} {
		if o := st.stored(kind, "shop", "a"); o != nil || len(st.read) > 0 {
			t.Errorf("%s: found %v, read views %v", kind, o, st.read)
		}
	}
	if o := st.stored(kinds.Lookup("security.istio.io", "RequestAuthentication"), "shop", "a"); o == nil || o.GetName() != "a" {
		t.Errorf("the cached RequestAuthentication was not found: %v", o)
	}
}

// TestForgetDeletedNamespace: nothing is kept of a deleted namespace's views, counters
// included, so that namespaces that come and go leave nothing behind.
func TestForgetDeletedNamespace(t *testing.T) {
	v := NewViews(fake.NewClientBuilder().WithScheme(scheme(t)).Build())
	v.watched.Store(true)
	pod := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ci-1234"}}
	v.changed(workloadsView, pod)
	if _, err := v.view(context.Background(), viewKey{"ci-1234", policiesView}); err != nil {
		t.Fatal(err)
	}
	v.forget(toolscache.DeletedFinalStateUnknown{Obj: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ci-1234"}}})
	kept := 0
	v.namespaces.Range(func(any, any) bool { kept++; return true })
	if kept != 0 {
		t.Errorf("%d entries kept of a deleted namespace", kept)
	}
}
