package webhook

import (
	"cmp"
	"slices"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/policy"
)

// pendingTTL bounds how long an allowed write is assumed to be on its way to the cache. A
// write meshguard allowed that then failed without the object changing otherwise (another
// webhook refused it) is assumed done for that long.
const pendingTTL = 30 * time.Second

// commitMemory is how long the last commit of a write that may open is remembered per
// namespace: longer than any review lasts (Limits.ReviewTimeout), so that a review never
// validates against a namespace whose last commit was forgotten while it judged.
const commitMemory = time.Minute

// pendingWrites are the security policy writes that may open (policy.MayOpen) meshguard
// allowed and its cache may not show yet. Two changes that each leave a workload protected
// while the other is cached (two DELETEs of its two enforcing policies) would each be
// allowed on the cache alone: each review lays the writes allowed before it over the
// cache, and a write is allowed only if no other such write was allowed, since it read
// them, in a namespace whose policies it read (commit). Writes of unrelated namespaces
// never wait for each other.
//
// An allowed write may yet fail (another writer's came first) or land after the next: while
// the cache does not show their outcome, a write that may open is judged in every state
// the pending writes it meets may leave (Server.inEveryWorld). Only what may open is kept:
// judging as if a write that only adds checks (a DENY policy's CREATE) had failed is only
// stricter. One object has one pending write at a time: of two writes of it at once at
// most one lands, so the second is refused (retry).
type pendingWrites struct {
	// alone is held shared by each attempt to judge a write that may open, and alone by the
	// last attempt of one that kept meeting conflicts: no write waits for ever.
	alone sync.RWMutex
	mu    sync.Mutex
	// writes are kept per namespace: a review lays over those of the namespaces it reads.
	writes map[string]map[pendingKey]pendingWrite
	// pending holds the namespaces that have writes, read without the lock: most reviews
	// find none in a namespace, and a mesh-wide one asks of every namespace.
	pending sync.Map
	// commits counts the writes that may open allowed so far; lastCommit holds, per
	// namespace, the count at its last one, for commitMemory.
	commits    uint64
	lastCommit map[string]commitMark
	pruned     time.Time
	// ttl is how long a write counts until the cache shows it (pendingTTL when zero).
	ttl time.Duration
}

type commitMark struct {
	seq uint64
	at  time.Time
}

// enter starts an attempt to judge a write that may open, beside the others or alone; the
// function it returns ends it.
func (p *pendingWrites) enter(alone bool) (leave func()) {
	if alone {
		p.alone.Lock()
		return p.alone.Unlock
	}
	p.alone.RLock()
	return p.alone.RUnlock
}

// seen returns the mark a review keeps of namespace ns when it reads its policies: taken
// before the pending writes are laid over, so that a write allowed in between is either
// laid over or found by commit.
func (p *pendingWrites) seen(ns string) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastCommit[ns].seq
}

// commitOutcome is what commit did.
type commitOutcome int

const (
	committed commitOutcome = iota
	// overtaken: another write was allowed since the review read a namespace: judge again.
	overtaken
	// competing: another write of the same object is on its way: refuse this one.
	competing
)

// commit records a write that may open, obj after it (nil for a DELETE) replacing old,
// if no other such write was allowed since the review read the namespaces of seen (their
// marks) and none of the same object is still on its way.
func (p *pendingWrites) commit(seen map[string]uint64, kind, namespace, name string, obj, old metav1.Object, now time.Time) commitOutcome {
	p.mu.Lock()
	defer p.mu.Unlock()
	for ns, seq := range seen {
		if p.lastCommit[ns].seq != seq {
			return overtaken
		}
	}
	if obj != nil && policy.Terminating(obj) {
		obj = nil // gone, as in the cache
	}
	w := pendingWrite{object: obj, created: old == nil, expires: now.Add(cmp.Or(p.ttl, pendingTTL))}
	if old != nil {
		w.oldVersion = old.GetResourceVersion()
	}
	key := pendingKey{kind, namespace, name}
	if prev, busy := p.writes[namespace][key]; busy && (old == nil || !prev.passedBy(w.oldVersion)) {
		return competing
	}
	if now.Sub(p.pruned) > commitMemory {
		for ns, mark := range p.lastCommit {
			if now.Sub(mark.at) > commitMemory {
				delete(p.lastCommit, ns)
			}
		}
		p.pruned = now
	}
	if p.lastCommit == nil {
		p.lastCommit = map[string]commitMark{}
	}
	p.commits++
	p.lastCommit[namespace] = commitMark{p.commits, now}
	if p.writes == nil {
		p.writes = map[string]map[pendingKey]pendingWrite{}
	}
	writes := p.writes[namespace]
	if writes == nil {
		writes = map[pendingKey]pendingWrite{}
		p.writes[namespace] = writes
		p.pending.Store(namespace, true)
	}
	writes[key] = w
	return committed
}

// passedBy tells whether the object, at version (as the cache or a later write finds it),
// is past this write: it landed, or lost to another. resourceVersions are etcd's
// revisions, compared as numbers; any other is compared for equality only.
func (w pendingWrite) passedBy(version string) bool {
	switch {
	case w.created:
		return true // it exists: the CREATE landed, or another did
	case w.oldVersion == "":
		return false // nothing to tell by
	}
	v, err1 := strconv.ParseUint(version, 10, 64)
	b, err2 := strconv.ParseUint(w.oldVersion, 10, 64)
	if err1 != nil || err2 != nil {
		return version != w.oldVersion
	}
	return v > b
}

type pendingKey struct{ kind, namespace, name string }

type pendingWrite struct {
	object  metav1.Object // nil once deleted
	created bool
	// oldVersion is the resourceVersion the write replaced ("" for a CREATE).
	oldVersion string
	expires    time.Time
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

// pendingWorld is one of the states a review judges in while pending writes have not
// landed, or failed, as far as the cache shows: those of notLanded are taken as failed,
// the others as landed. unknown collects the pending writes the review met.
type pendingWorld struct {
	notLanded map[pendingKey]bool
	unknown   map[pendingKey]bool
}

// overlay returns the policies view of namespace ns with the pending writes laid over
// (but those world takes as failed), forgetting those the cache now shows, and those
// expired.
func (p *pendingWrites) overlay(ns string, view *policy.Snapshot, now time.Time, world *pendingWorld) *policy.Snapshot {
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
		skip := world != nil && world.notLanded[key]
		var unknown bool
		switch key.kind {
		case policy.KindRequestAuthentication:
			ras, unknown = lay(p, key, w, ras, now, skip)
		case policy.KindAuthorizationPolicy:
			aps, unknown = lay(p, key, w, aps, now, skip)
		case policy.KindPeerAuthentication:
			pas, unknown = lay(p, key, w, pas, now, skip)
		}
		laid = laid || unknown && !skip
		if unknown && world != nil {
			if world.unknown == nil {
				world.unknown = map[pendingKey]bool{}
			}
			world.unknown[key] = true
		}
	}
	if !laid {
		return view
	}
	return view.WithPolicies(ns, ras, aps, pas)
}

// lay applies write w to the cached objects of its kind, unless skip, and tells that its
// outcome is not known yet; or forgets it when the cache shows it done or it expired.
func lay[T metav1.Object](p *pendingWrites, key pendingKey, w pendingWrite, cached []T, now time.Time, skip bool) ([]T, bool) {
	i := slices.IndexFunc(cached, func(o T) bool { return o.GetName() == key.name })
	done := w.object == nil && i < 0 || // deleted
		i >= 0 && w.passedBy(cached[i].GetResourceVersion()) // written, by it or another
	if done || now.After(w.expires) {
		p.forget(key)
		return cached, false
	}
	if skip {
		return cached, true
	}
	out := slices.Clone(cached)
	if i >= 0 {
		out = slices.Delete(out, i, i+1)
	}
	if w.object != nil {
		out = append(out, w.object.(T))
	}
	return out, true
}

// dryRunTTL is how long a dry run's write counts for the dry runs after it.
const dryRunTTL = 10 * time.Second

// dryRunWrites are the writes that may open of each user's dry runs, for dryRunTTL: a dry
// run of several objects (kubectl apply -f DIR --dry-run=server, a DELETE of a collection)
// is judged object after object, each with those before laid over, as the real call would
// be. They count for that user's dry runs only.
type dryRunWrites struct {
	mu    sync.Mutex
	users map[string]*dryRunsOf
}

type dryRunsOf struct {
	writes pendingWrites
	last   time.Time
}

// of returns the dry-run writes of user, forgetting the users with none for dryRunTTL.
func (d *dryRunWrites) of(user string, now time.Time) *pendingWrites {
	d.mu.Lock()
	defer d.mu.Unlock()
	for u, w := range d.users {
		if now.Sub(w.last) > dryRunTTL {
			delete(d.users, u)
		}
	}
	if d.users == nil {
		d.users = map[string]*dryRunsOf{}
	}
	w := d.users[user]
	if w == nil {
		w = &dryRunsOf{writes: pendingWrites{ttl: dryRunTTL}}
		d.users[user] = w
	}
	w.last = now
	return &w.writes
}
