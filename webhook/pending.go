package webhook

import (
	"slices"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/policy"
)

// pendingTTL bounds how long an allowed write is assumed to be on its way to the cache. A
// write meshguard allowed that then failed (another webhook refused it) is assumed done
// for that long: a DELETE, and most changes, then only make the judging stricter.
const pendingTTL = 30 * time.Second

// pendingWrites are the security policy writes meshguard allowed that its cache may not
// show yet. Two changes that each leave a workload protected while the other is cached
// (two DELETEs of its two enforcing policies) would each be allowed on the cache alone:
// policy writes are judged one at a time, each against the cache with the writes allowed
// before it laid over.
type pendingWrites struct {
	// judging is held while a policy write is judged and recorded.
	judging sync.Mutex
	mu      sync.Mutex
	// writes are kept per namespace: a review lays over those of the namespaces it reads.
	writes map[string]map[pendingKey]pendingWrite
	// pending holds the namespaces that have writes, read without the lock: most reviews
	// find none in a namespace, and a mesh-wide one asks of every namespace.
	pending sync.Map
}

type pendingKey struct{ kind, namespace, name string }

type pendingWrite struct {
	object metav1.Object // nil once deleted
	// oldVersion is the resourceVersion the write replaced ("" for a CREATE).
	oldVersion string
	expires    time.Time
}

// record notes a write allowed: obj after it (nil for a DELETE), replacing old.
func (p *pendingWrites) record(kind, namespace, name string, obj, old metav1.Object, now time.Time) {
	w := pendingWrite{object: obj, expires: now.Add(pendingTTL)}
	if old != nil {
		w.oldVersion = old.GetResourceVersion()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.writes == nil {
		p.writes = map[string]map[pendingKey]pendingWrite{}
	}
	writes := p.writes[namespace]
	if writes == nil {
		writes = map[pendingKey]pendingWrite{}
		p.writes[namespace] = writes
		p.pending.Store(namespace, true)
	}
	writes[pendingKey{kind, namespace, name}] = w
}

// forget drops a write; the lock is held.
func (p *pendingWrites) forget(key pendingKey) {
	writes := p.writes[key.namespace]
	delete(writes, key)
	if len(writes) == 0 {
		delete(p.writes, key.namespace)
		p.pending.Delete(key.namespace)
	}
}

// overlay returns the policies view of namespace ns with the pending writes laid over,
// forgetting those the cache now shows, and those expired.
func (p *pendingWrites) overlay(ns string, view *policy.Snapshot, now time.Time) *policy.Snapshot {
	if p == nil {
		return view
	}
	if _, pending := p.pending.Load(ns); !pending {
		return view
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ras, aps, pas := view.RAs[ns], view.APs[ns], view.PAs[ns]
	laid := false
	for key, w := range p.writes[ns] {
		switch key.kind {
		case policy.KindRequestAuthentication:
			ras, laid = lay(p, key, w, ras, now), true
		case policy.KindAuthorizationPolicy:
			aps, laid = lay(p, key, w, aps, now), true
		case policy.KindPeerAuthentication:
			pas, laid = lay(p, key, w, pas, now), true
		}
	}
	if !laid {
		return view
	}
	return view.WithPolicies(ns, ras, aps, pas)
}

// lay applies write w to the cached objects of its kind, or forgets it when the cache
// shows it done or it expired.
func lay[T metav1.Object](p *pendingWrites, key pendingKey, w pendingWrite, cached []T, now time.Time) []T {
	i := slices.IndexFunc(cached, func(o T) bool { return o.GetName() == key.name })
	done := w.object == nil && i < 0 || // deleted
		w.object != nil && i >= 0 && cached[i].GetResourceVersion() != w.oldVersion // created or updated
	if done || now.After(w.expires) {
		p.forget(key)
		return cached
	}
	out := slices.Clone(cached)
	if i >= 0 {
		out = slices.Delete(out, i, i+1)
	}
	if w.object != nil {
		out = append(out, w.object.(T))
	}
	return out
}
