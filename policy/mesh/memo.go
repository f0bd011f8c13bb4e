package mesh

import (
	"sync"
	"sync/atomic"
)

// Memo keeps what the engine works out of each namespace's policies in a State whose
// policies outlive a review: the webhook's views hand every review the memo of the view it
// reads. What it keeps of a namespace holds until the namespace's policies change: the
// State forgets it then (Forget), or hands out another memo.
type Memo struct {
	namespaces sync.Map // namespace → what the engine worked out
	// last is the namespace last stored: a webhook's view holds one namespace.
	last atomic.Pointer[memoEntry]
}

type memoEntry struct {
	namespace string
	value     any
}

// Load returns what is kept of namespace ns.
func (m *Memo) Load(ns string) (any, bool) {
	if e := m.last.Load(); e != nil && e.namespace == ns {
		return e.value, true
	}
	return m.namespaces.Load(ns)
}

// Store keeps v for namespace ns.
func (m *Memo) Store(ns string, v any) {
	m.namespaces.Store(ns, v)
	m.last.Store(&memoEntry{ns, v})
}

// Forget drops what is kept of the policies of ns: they changed.
func (m *Memo) Forget(ns string) {
	if m != nil {
		m.namespaces.Delete(ns)
		m.last.Store(nil)
	}
}

// Memos is a State that keeps a Memo with its policies (nil where it keeps none of a
// namespace).
type Memos interface {
	PolicyMemo(ns string) *Memo
}
