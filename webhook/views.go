package webhook

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/meshguard/meshguard/api/v1alpha1"
	"github.com/meshguard/meshguard/kinds"
	"github.com/meshguard/meshguard/policy"
)

// Views hold, per namespace, the policies, Services and workloads the engine reads, sorted
// as Istio orders them. A namespace's view is built from the cache on first use and kept
// until the cache reports a change in that namespace, so a review costs the same whatever
// the size of the cluster and does not re-list and re-sort on every request.
//
// A namespace has two views, each dropped only by changes of its own kinds: its policies
// and Services, which every review reads, and its workloads, which only reviews of policies
// read (to find what a policy selects). Pods come and go far more often than policies
// change; a Pod's review then never rebuilds its namespace's workloads, however many.
//
// The guardrails in force are kept the same way, per namespace, merged: any change to a
// MeshGuardrail or a Namespace makes them all stale (both are few and rarely change).
//
// Until Watch is called nothing is kept: every read builds afresh.
type Views struct {
	reader  client.Reader
	watched atomic.Bool
	// stores are the informers' stores of viewedKinds, where Watch could reach them; views
	// read the others from reader. Set before watched.
	stores []toolscache.Indexer
	// installed are the kinds the cluster serves, once watched (see serves).
	installed []*kinds.Kind
	// namespaces holds, per namespace, what is kept of its views (*namespaceViews): one
	// entry, found with one lookup, as a mesh-wide review reads the views of every namespace.
	namespaces sync.Map
	// settingsVersion counts guardrail and namespace changes: the merged settings kept
	// per namespace are valid while their version is current.
	settingsVersion atomic.Uint64
}

// viewPart is one of a namespace's two views.
type viewPart int

const (
	policiesView viewPart = iota
	workloadsView
)

// viewKey names one view: a part of a namespace.
type viewKey struct {
	namespace string
	part      viewPart
}

// atVersion is what was built from the cache at one version of its sources.
type atVersion[T any] struct {
	version uint64
	value   T
}

// namespaceViews are what is kept of a namespace: per part of its views, the changes seen
// and the last view built, and its merged settings, each valid while its version is
// current.
type namespaceViews struct {
	parts [2]struct {
		version atomic.Uint64
		kept    atomic.Pointer[atVersion[*policy.Snapshot]]
	}
	settings atomic.Pointer[atVersion[*policy.Settings]]
}

// NewViews returns views over an informer cache (or any reader, uncached).
func NewViews(reader client.Reader) *Views { return &Views{reader: reader} }

// viewedKind is one kind a namespace's views are made of, and the view it is part of.
type viewedKind struct {
	part viewPart
	kind *kinds.Kind
}

// viewedKinds are the cached kinds of the kinds table but the settings: policies and
// Services make up the policies view, workloads the workloads view.
var viewedKinds = func() []viewedKind {
	var viewed []viewedKind
	for _, k := range kinds.Cached() {
		switch k.Role {
		case kinds.Policy, kinds.Service, kinds.Proxy:
			if !k.ClusterScoped { // a GatewayClass is read by name (gatewayClass)
				viewed = append(viewed, viewedKind{policiesView, k})
			}
		case kinds.Workload:
			viewed = append(viewed, viewedKind{workloadsView, k})
		}
	}
	return viewed
}()

// Watch keeps views from now on, invalidated by the informers' change notifications. The
// informers update their store before they notify, so a view built after a notification
// sees the change; one built while a change arrives carries the older version and is
// rebuilt on next use.
func (v *Views) Watch(ctx context.Context, informers cache.Informers, installed []*kinds.Kind) error {
	settingsHandler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    v.settingsChanged,
		UpdateFunc: func(_, updated any) { v.settingsChanged(updated) },
		DeleteFunc: func(obj any) {
			v.settingsChanged(obj)
			v.forget(obj)
		},
	}
	for _, k := range installed {
		if k.Role != kinds.Setting {
			continue
		}
		if _, err := watch(ctx, informers, k, settingsHandler); err != nil {
			return err
		}
	}
	stores := make([]toolscache.Indexer, len(viewedKinds))
	for i, k := range viewedKinds {
		if !slices.Contains(installed, k.kind) {
			continue
		}
		inf, err := watch(ctx, informers, k.kind, v.changes(k.part))
		if err != nil {
			return err
		}
		// Views point at the objects the informers store rather than at copies: a view
		// then costs a pointer per object, not the object again.
		if indexed, ok := inf.(interface{ GetIndexer() toolscache.Indexer }); ok {
			stores[i] = indexed.GetIndexer()
		}
	}
	v.stores, v.installed = stores, installed
	v.watched.Store(true)
	return nil
}

// watch adds handler to the informer of a kind.
func watch(ctx context.Context, informers cache.Informers, kind *kinds.Kind, handler toolscache.ResourceEventHandler) (cache.Informer, error) {
	o, _ := kind.CacheObject()
	inf, err := informers.GetInformer(ctx, o, cache.BlockUntilSynced(false))
	if err == nil {
		_, err = inf.AddEventHandler(handler)
	}
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", kind, err)
	}
	return inf, nil
}

// forget drops what is kept of a deleted namespace's views, its change counters too: a
// cluster whose namespaces come and go (one per CI run) keeps none of them.
func (v *Views) forget(obj any) {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return
	}
	v.namespaces.Delete(ns.Name)
}

// settingsChanged is told of every MeshGuardrail and Namespace change.
func (v *Views) settingsChanged(any) { v.settingsVersion.Add(1) }

// settingsOf returns the guardrails in force in ns, merging them if they are missing or
// stale. They are shared: callers must not modify them.
func (v *Views) settingsOf(ctx context.Context, ns string) (*policy.Settings, error) {
	return v.settingsIn(ctx, v.of(ns), ns)
}

// settingsIn is settingsOf, given what is kept of ns.
func (v *Views) settingsIn(ctx context.Context, kept *namespaceViews, ns string) (*policy.Settings, error) {
	current := v.settingsVersion.Load()
	if s := kept.settings.Load(); s != nil && s.version == current {
		return s.value, nil
	}
	var rails v1alpha1.MeshGuardrailList
	if err := v.reader.List(ctx, &rails, client.UnsafeDisableDeepCopy); err != nil {
		return &policy.Settings{}, err
	}
	guardrails := make([]*policy.MeshGuardrail, len(rails.Items))
	for i := range rails.Items {
		guardrails[i] = &rails.Items[i]
	}
	var namespace corev1.Namespace
	if ns != "" {
		// A namespace being created is not in the cache yet: it is judged by its name.
		if err := v.reader.Get(ctx, client.ObjectKey{Name: ns}, &namespace); err != nil && !apierrors.IsNotFound(err) {
			return &policy.Settings{}, err
		}
	}
	s := new(policy.MergeGuardrails(guardrails, ns, policy.WithNameLabel(ns, namespace.Labels)))
	if v.watched.Load() { // unwatched, nothing would ever tell that they are stale
		kept.settings.Store(&atVersion[*policy.Settings]{current, s})
	}
	return s, nil
}

// changes returns the event handler of the kinds that make up views of part.
func (v *Views) changes(part viewPart) toolscache.ResourceEventHandler {
	changed := func(obj any) { v.changed(part, obj) }
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    changed,
		UpdateFunc: func(old, updated any) { v.updated(part, old, updated) },
		DeleteFunc: changed,
	}
}

// updated is told of every update of a viewed kind. A Pod's update that changes nothing
// the cache keeps of it but its resourceVersion keeps the view: those are its status
// changes, most of a cluster's events, and a namespace of many Pods would otherwise be
// rebuilt for nearly every review of a policy. The view then points at the Pod's previous
// object, equal in all it reads. An object's namespace never changes: the updated object
// names the view to drop.
func (v *Views) updated(part viewPart, old, updated any) {
	if o, ok := old.(*metav1.PartialObjectMetadata); ok {
		if u, ok := updated.(*metav1.PartialObjectMetadata); ok && sameButVersion(*o, *u) {
			return
		}
	}
	v.changed(part, updated)
}

// sameButVersion compares copies, whose resourceVersions may be blanked.
func sameButVersion(old, updated metav1.PartialObjectMetadata) bool {
	old.ResourceVersion, updated.ResourceVersion = "", ""
	return equality.Semantic.DeepEqual(old, updated)
}

func (v *Views) changed(part viewPart, obj any) {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if o, ok := obj.(metav1.Object); ok {
		views := &v.of(o.GetNamespace()).parts[part]
		views.version.Add(1)
		// Dropped rather than kept stale: a deleted namespace's view holds no memory.
		views.kept.Store(nil)
	}
}

// of returns what is kept of a namespace's views.
func (v *Views) of(ns string) *namespaceViews {
	if views, ok := v.namespaces.Load(ns); ok {
		return views.(*namespaceViews)
	}
	views, _ := v.namespaces.LoadOrStore(ns, new(namespaceViews))
	return views.(*namespaceViews)
}

// view returns one view of a namespace, building it if it is missing or stale.
func (v *Views) view(ctx context.Context, key viewKey) (*policy.Snapshot, error) {
	return v.viewIn(ctx, v.of(key.namespace), key)
}

// viewIn is view, given what is kept of the view's namespace.
func (v *Views) viewIn(ctx context.Context, kept *namespaceViews, key viewKey) (*policy.Snapshot, error) {
	views := &kept.parts[key.part]
	current := views.version.Load()
	if kept := views.kept.Load(); kept != nil && kept.version == current {
		return kept.value, nil
	}
	s, err := v.build(key, func(i int) ([]any, error) { return v.list(ctx, i, key.namespace) })
	if err != nil {
		return nil, err
	}
	// Unwatched, nothing would ever tell that it is stale.
	if v.watched.Load() {
		views.kept.Store(&atVersion[*policy.Snapshot]{current, s})
	}
	return s, nil
}

// build makes a view of the objects list gives of each viewed kind (by its index in
// viewedKinds).
func (v *Views) build(key viewKey, list func(i int) ([]any, error)) (*policy.Snapshot, error) {
	ns := key.namespace
	var ras []*securityv1.RequestAuthentication
	var aps []*securityv1.AuthorizationPolicy
	var pas []*securityv1.PeerAuthentication
	var pods []*metav1.PartialObjectMetadata
	s := policy.NewSnapshot()
	for i, k := range viewedKinds {
		if k.part != key.part {
			continue
		}
		objects, err := list(i)
		if err != nil {
			return nil, err
		}
		// The engine only reads what the cache hands out.
		for _, o := range objects {
			switch o := o.(type) {
			case *securityv1.RequestAuthentication:
				ras = append(ras, o)
			case *securityv1.AuthorizationPolicy:
				aps = append(aps, o)
			case *securityv1.PeerAuthentication:
				pas = append(pas, o)
			case *corev1.Service, *policy.Gateway, *policy.ServiceEntry, *policy.HTTPRoute:
				s.Add(o.(metav1.Object))
			case *metav1.PartialObjectMetadata:
				pods = append(pods, o)
			default:
				return nil, fmt.Errorf("the cache holds a %T in namespace %q", o, ns)
			}
		}
	}
	if len(pods) > 0 {
		s.AddWorkloads(ns, kinds.PodWorkloads(pods)...)
	}
	for _, o := range policy.OldestFirst(ras) {
		s.Add(o)
	}
	for _, o := range policy.OldestFirst(aps) {
		s.Add(o)
	}
	for _, o := range policy.OldestFirst(pas) {
		s.Add(o)
	}
	return s, nil
}

// workloadsEverywhere returns the workloads of every namespace whose labels include
// matchLabels, what a mesh-wide policy selects, read from every Pod: where there are no
// namespace views to read them from (liveState.workloadsEverywhere). From a store, they
// point at its objects; the cache's List would copy every Pod's metadata.
func (v *Views) workloadsEverywhere(ctx context.Context, matchLabels map[string]string) ([]*policy.Workload, error) {
	objects, err := v.list(ctx, podKind, metav1.NamespaceAll)
	if err != nil {
		return nil, err
	}
	var out []*policy.Workload
	for _, o := range objects {
		if pod, ok := o.(*metav1.PartialObjectMetadata); ok && policy.Selects(matchLabels, pod.Labels) {
			out = append(out, kinds.PodWorkload(pod))
		}
	}
	return out, nil
}

// podNamespaces returns the namespaces that have Pods, from the Pod informer's index;
// false when the views are not watched.
func (v *Views) podNamespaces() ([]string, bool) {
	if !v.watched.Load() || podKind >= len(v.stores) || v.stores[podKind] == nil {
		return nil, false
	}
	return v.stores[podKind].ListIndexFuncValues(toolscache.NamespaceIndex), true
}

// podKind is the index of Pods in viewedKinds.
var podKind = slices.IndexFunc(viewedKinds, func(k viewedKind) bool { return k.part == workloadsView })

// list returns the objects of the i-th viewed kind in ns (every namespace for
// metav1.NamespaceAll): from its informer's store when watched, else from the reader.
func (v *Views) list(ctx context.Context, i int, ns string) ([]any, error) {
	if !v.serves(viewedKinds[i].kind) {
		return nil, nil
	}
	if v.watched.Load() && i < len(v.stores) && v.stores[i] != nil {
		if ns == metav1.NamespaceAll {
			return v.stores[i].List(), nil
		}
		return v.stores[i].ByIndex(toolscache.NamespaceIndex, ns)
	}
	_, l := viewedKinds[i].kind.CacheObject()
	return listThrough(ctx, v.reader, l, ns)
}

// listThrough lists the objects of ns into l through reader, and returns them.
func listThrough(ctx context.Context, reader client.Reader, l client.ObjectList, ns string) ([]any, error) {
	if err := reader.List(ctx, l, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	var objects []any
	err := meta.EachListItem(l, func(o runtime.Object) error {
		objects = append(objects, o)
		return nil
	})
	return objects, err
}

// gatewayClass returns the GatewayClass of a name from the cache, or nil: also where the
// cluster does not serve the Gateway API.
func (v *Views) gatewayClass(ctx context.Context, name string) (*policy.GatewayClass, error) {
	if !v.serves(kinds.Lookup(gatewayv1.GroupName, "GatewayClass")) {
		return nil, nil
	}
	var class gatewayv1.GatewayClass
	err := v.reader.Get(ctx, client.ObjectKey{Name: name}, &class)
	switch {
	case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &class, nil
}

// serves tells whether the cluster serves a kind: one it does not has none of its objects.
// Views not watched (or watched without the list) read every kind.
func (v *Views) serves(k *kinds.Kind) bool {
	return !v.watched.Load() || v.installed == nil || slices.Contains(v.installed, k)
}
