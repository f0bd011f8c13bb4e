// Package webhook is meshguard's admission webhook: it decodes admission requests, judges
// them with the policy engine against the live state in its informer caches, and encodes
// the verdict. It holds no rules of its own.
package webhook

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshguard/meshguard/kinds"
	"github.com/meshguard/meshguard/policy"
)

// CachedObjects are the objects meshguard watches: the cached kinds of the kinds table the
// cluster serves (kinds.Installed), as its cache holds them.
func CachedObjects(installed []*kinds.Kind) []client.Object {
	var objects []client.Object
	for _, k := range installed {
		o, _ := k.CacheObject()
		objects = append(objects, o)
	}
	return objects
}

// liveState is the policy.State of one admission request, read from the namespace views
// (over the informer cache) by the request's goroutine. The State interface cannot fail, so
// the first read error is kept: the handler then fails closed instead of judging a partial
// view.
type liveState struct {
	ctx    context.Context
	views  *Views
	istiod []string
	err    error
	// read holds what this request has read of each namespace: one review sees one
	// version of each view and of the settings, however many times its rules ask.
	read map[string]*namespaceRead
	// everywhere holds the mesh-wide selections this request has made, by selector: several
	// rules ask for the same one, each a read of every namespace's workloads, and asking
	// again must give the same workloads (the engine remembers what it worked out of each).
	everywhere map[string][]*policy.Workload
	// pending are the policy writes allowed that the cache may not show yet, as of now.
	pending *pendingWrites
	// dryRuns, for a dry run, are the writes of the user's dry runs just before it.
	dryRuns *pendingWrites
	now     time.Time
	// consistent, when set, reads the security policies of some namespaces from the API
	// server itself.
	consistent *consistentReads
	// seen, when set, keeps the mark of each namespace whose policies the review read
	// (pendingWrites.seen), for its write to be committed against.
	seen map[string]uint64
	// world, when set, says which pending writes the review takes as failed, and collects
	// those it met.
	world *pendingWorld
}

func (s *liveState) fail(err error) {
	if s.err == nil {
		s.err = err
	}
}

// policies is the view of the policies and Services of ns; on error, an empty one.
func (s *liveState) policies(ns string) *policy.Snapshot { return s.view(viewKey{ns, policiesView}) }

// workloads is the view of the workloads of ns; on error, an empty one.
func (s *liveState) workloads(ns string) *policy.Snapshot { return s.view(viewKey{ns, workloadsView}) }

// namespaceRead is what a review has read of one namespace: where its views are kept,
// and its views and settings once read.
type namespaceRead struct {
	kept     *namespaceViews
	views    [2]*policy.Snapshot
	settings *policy.Settings
}

func (s *liveState) namespace(ns string) *namespaceRead {
	if r, ok := s.read[ns]; ok {
		return r
	}
	if s.read == nil {
		s.read = map[string]*namespaceRead{}
	}
	r := &namespaceRead{kept: s.views.of(ns)}
	s.read[ns] = r
	return r
}

func (s *liveState) view(key viewKey) *policy.Snapshot {
	r := s.namespace(key.namespace)
	if v := r.views[key.part]; v != nil {
		return v
	}
	if key.part == policiesView && s.seen != nil {
		s.seen[key.namespace] = s.pending.seen(key.namespace) // before the overlay
	}
	var v *policy.Snapshot
	var err error
	if key.part == policiesView && s.consistent.covers(key.namespace) {
		v, err = s.consistent.view(s.ctx, s.views, key.namespace)
	} else {
		v, err = s.views.viewIn(s.ctx, r.kept, key)
	}
	if err != nil {
		s.fail(err)
		v = policy.NewSnapshot()
	}
	if key.part == policiesView {
		if s.now.IsZero() {
			s.now = time.Now() // one review, one instant
		}
		v = s.pending.overlay(key.namespace, v, s.now, s.world)
		if s.dryRuns != nil {
			v = s.dryRuns.overlay(key.namespace, v, s.now, nil)
		}
	}
	r.views[key.part] = v
	return v
}

// stored finds a security policy in its namespace's view (see decodeOld). Other kinds are
// not looked for: the cache keeps only part of a Pod's metadata, and guardrails have no
// namespace view.
func (s *liveState) stored(kind *kinds.Kind, ns, name string) metav1.Object {
	if kind.Role != kinds.Policy {
		return nil
	}
	return s.policies(ns).Find(kind.Kind, ns, name)
}

// Err returns the first error met reading the cache.
func (s *liveState) Err() error { return s.err }

func (s *liveState) RequestAuthentications(ns string) []*policy.RequestAuthentication {
	return s.policies(ns).RequestAuthentications(ns)
}

func (s *liveState) AuthorizationPolicies(ns string) []*policy.AuthorizationPolicy {
	return s.policies(ns).AuthorizationPolicies(ns)
}

func (s *liveState) PeerAuthentications(ns string) []*policy.PeerAuthentication {
	return s.policies(ns).PeerAuthentications(ns)
}

// PolicyMemo is the memo kept with the policies view of ns, as long as the view.
func (s *liveState) PolicyMemo(ns string) *policy.PolicyMemo { return s.policies(ns).PolicyMemo(ns) }

func (s *liveState) Services(ns string) []*corev1.Service { return s.policies(ns).Services(ns) }

func (s *liveState) Gateways(ns string) []*policy.Gateway { return s.policies(ns).Gateways(ns) }

func (s *liveState) HTTPRoutes(ns string) []*policy.HTTPRoute { return s.policies(ns).HTTPRoutes(ns) }

func (s *liveState) ServiceEntries(ns string) []*policy.ServiceEntry {
	return s.policies(ns).ServiceEntries(ns)
}

func (s *liveState) Workloads(ns string, matchLabels map[string]string) []*policy.Workload {
	if ns != "" {
		return s.workloads(ns).Workloads(ns, matchLabels)
	}
	// Mesh-wide policies select across namespaces.
	key := selectionKey(matchLabels)
	if ws, ok := s.everywhere[key]; ok {
		return ws
	}
	ws := s.workloadsEverywhere(matchLabels)
	if s.everywhere == nil {
		s.everywhere = map[string][]*policy.Workload{}
	}
	s.everywhere[key] = ws
	return ws
}

// workloadsEverywhere selects from the workloads view of each namespace with Pods, which
// are kept between reviews and index their workloads by label: a review then reads only
// the Pods that carry the selector's labels, not every Pod of the cluster.
func (s *liveState) workloadsEverywhere(matchLabels map[string]string) []*policy.Workload {
	namespaces, indexed := s.views.podNamespaces()
	if !indexed {
		ws, err := s.views.workloadsEverywhere(s.ctx, matchLabels)
		if err != nil {
			s.fail(err)
		}
		return ws
	}
	if len(s.read) < len(namespaces) {
		// Each namespace is read, and kept for the review: make room once.
		read := make(map[string]*namespaceRead, len(namespaces))
		maps.Copy(read, s.read)
		s.read = read
	}
	// Each namespace's, then all in one allocation.
	parts := make([][]*policy.Workload, len(namespaces))
	for i, ns := range namespaces {
		parts[i], _ = s.workloads(ns).Selected(ns, matchLabels)
	}
	return slices.Concat(parts...)
}

// selectionKey names a selector unambiguously: each key and value quoted, in key order.
func selectionKey(matchLabels map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(matchLabels)) {
		b.WriteString(strconv.Quote(k) + "=" + strconv.Quote(matchLabels[k]) + ",")
	}
	return b.String()
}

func (s *liveState) GatewayClass(name string) *policy.GatewayClass {
	class, err := s.views.gatewayClass(s.ctx, name)
	if err != nil {
		s.fail(err)
	}
	return class
}

// KnowsGateways is true: the cache holds every Gateway of the cluster, or the cluster
// serves none.
func (s *liveState) KnowsGateways() bool { return true }

// KnowsWorkloads is true: the cache holds every Pod of the cluster.
func (s *liveState) KnowsWorkloads() bool { return true }

// Settings are asked of every workload a policy selects (its data plane): a review keeps
// those it has read.
func (s *liveState) Settings(ns string) policy.Settings {
	r := s.namespace(ns)
	if r.settings == nil {
		settings, err := s.views.settingsIn(s.ctx, r.kept, ns)
		if err != nil {
			s.fail(err)
		}
		r.settings = settings
	}
	return *r.settings
}

func (s *liveState) IstiodVersions() []string { return s.istiod }

// NamespaceNames lists the cluster's namespaces from the cache.
func (s *liveState) NamespaceNames() []string {
	var list corev1.NamespaceList
	if err := s.views.reader.List(s.ctx, &list); err != nil {
		s.fail(err)
		return nil
	}
	names := make([]string, len(list.Items))
	for i, ns := range list.Items {
		names[i] = ns.Name
	}
	slices.Sort(names)
	return names
}
