package webhook

import (
	"context"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshguard/meshguard/kinds"
	"github.com/meshguard/meshguard/policy"
)

// ConsistentReadTimeout bounds the reads of a review from the API server, well inside the
// security webhooks' timeout of 5 s: past it the review fails closed.
const ConsistentReadTimeout = 2 * time.Second

// consistentReads read the security policies of a few namespaces from the API server, for
// one review of a write that may open (policy.MayOpen) judged by a replica that has not led
// long enough to know every such write (see Leader): the write's namespace and the root
// namespace. Another replica may have allowed a write there a moment ago that this
// replica's cache does not show yet. A list without a resourceVersion is served from the
// API server's watch cache once that has caught up with etcd (ConsistentListFromCache):
// cheap for the API server, but the wait for the watch cache is up to a tenth of a second.
// Each namespace is read once for all the attempts of the review.
type consistentReads struct {
	reader client.Reader
	// slots bound the reviews reading from the API server at once (maxConsistentReads),
	// dry runs included: each may list policies whole.
	slots      chan struct{}
	namespaces []string
	// views are the namespaces' views once read, all at once: each waits for the watch
	// cache.
	views map[string]*policy.Snapshot
	err   error
}

func (c *consistentReads) covers(ns string) bool {
	return c != nil && slices.Contains(c.namespaces, ns)
}

// view returns the policies view of ns with its security policies as the API server holds
// them now. The API server lists their metadata alone (no spec to decode); when the cached
// view holds the same objects at the same versions, as it nearly always does, it is the
// view, and what was compiled of it is kept. Else the policies are listed whole.
func (c *consistentReads) view(ctx context.Context, v *Views, ns string) (*policy.Snapshot, error) {
	if c.views == nil && c.err == nil {
		c.readAll(ctx, v)
	}
	return c.views[ns], c.err
}

// maxConsistentReads is how many reviews of a replica read from the API server at once;
// more wait for a slot within their time.
const maxConsistentReads = 4

// readAll reads the views of every namespace of c at once.
func (c *consistentReads) readAll(ctx context.Context, v *Views) {
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	case <-ctx.Done():
		c.err = fmt.Errorf("more reviews than meshguard reads from the API server at once (%d): %w", maxConsistentReads, ctx.Err())
		return
	}
	namespaces := slices.Compact(slices.Sorted(slices.Values(c.namespaces)))
	views := make([]*policy.Snapshot, len(namespaces))
	var g errgroup.Group
	for i, ns := range namespaces {
		g.Go(func() (err error) {
			views[i], err = c.read(ctx, v, ns)
			return err
		})
	}
	if c.err = g.Wait(); c.err != nil {
		return
	}
	c.views = make(map[string]*policy.Snapshot, len(namespaces))
	for i, ns := range namespaces {
		c.views[ns] = views[i]
	}
}

// read reads the view of one namespace.
func (c *consistentReads) read(ctx context.Context, v *Views, ns string) (*policy.Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, ConsistentReadTimeout)
	defer cancel()
	versions, err := c.listPolicies(ctx, v, ns, func(k *kinds.Kind) client.ObjectList {
		l := &metav1.PartialObjectMetadataList{}
		l.SetGroupVersionKind(k.Preferred().GroupVersion().WithKind(k.Kind + "List"))
		return l
	})
	if err != nil {
		return nil, err
	}
	s, err := v.view(ctx, viewKey{ns, policiesView})
	if err != nil {
		return nil, err
	}
	if !sameVersions(s, ns, versions) {
		whole, err := c.listPolicies(ctx, v, ns, func(k *kinds.Kind) client.ObjectList {
			_, l := k.CacheObject()
			return l
		})
		if err != nil {
			return nil, err
		}
		s, err = v.build(viewKey{ns, policiesView}, func(i int) ([]any, error) {
			if viewedKinds[i].kind.Role == kinds.Policy {
				return whole[i], nil
			}
			return v.list(ctx, i, ns)
		})
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

// listPolicies lists, at once, the security policies of ns of each kind the cluster
// serves into the list newList makes; by the index of their kind in viewedKinds.
func (c *consistentReads) listPolicies(ctx context.Context, v *Views, ns string, newList func(*kinds.Kind) client.ObjectList) ([][]any, error) {
	listed := make([][]any, len(viewedKinds))
	g, ctx := errgroup.WithContext(ctx)
	for i, k := range viewedKinds {
		if k.kind.Role != kinds.Policy || !v.serves(k.kind) {
			continue
		}
		g.Go(func() (err error) {
			listed[i], err = listThrough(ctx, c.reader, newList(k.kind), ns)
			return err
		})
	}
	return listed, g.Wait()
}

// sameVersions tells whether a view holds exactly the security policies listed (by the
// index of their kind in viewedKinds) in ns, each at the same resourceVersion.
func sameVersions(view *policy.Snapshot, ns string, listed [][]any) bool {
	for i, objects := range listed {
		k := viewedKinds[i].kind
		if k.Role != kinds.Policy {
			continue
		}
		var held []metav1.Object
		switch k.Kind {
		case policy.KindRequestAuthentication:
			held = asObjects(view.RequestAuthentications(ns))
		case policy.KindAuthorizationPolicy:
			held = asObjects(view.AuthorizationPolicies(ns))
		case policy.KindPeerAuthentication:
			held = asObjects(view.PeerAuthentications(ns))
		default:
			return false
		}
		if len(held) != len(objects) {
			return false
		}
		versions := make(map[string]string, len(held))
		for _, o := range held {
			versions[o.GetName()] = o.GetResourceVersion()
		}
		for _, o := range objects {
			m, ok := o.(metav1.Object)
			if !ok || versions[m.GetName()] != m.GetResourceVersion() {
				return false
			}
		}
	}
	return true
}

func asObjects[T metav1.Object](items []T) []metav1.Object {
	out := make([]metav1.Object, len(items))
	for i, o := range items {
		out[i] = o
	}
	return out
}
