package policy

import (
	"slices"

	"github.com/meshguard/meshguard/policy/mesh"
)

// changedWorkloads are the workloads the object of a change applied to and applies to,
// once each: those it was written for when none is known yet.
func (c *Context) changedWorkloads() []*Workload {
	root := c.Settings.Root
	var affected []*Workload
	switch {
	case c.OldObject == nil:
		affected = mesh.ScopeOf(c.Object).Workloads(c.Before, root)
	case c.Operation == Update:
		affected = append(mesh.ScopeOf(c.OldObject).Workloads(c.Before, root), mesh.ScopeOf(c.Object).SelectedBy(c.State, root)...)
	default:
		affected = mesh.ScopeOf(c.OldObject).Workloads(c.Before, root)
	}
	seen := make(map[*Workload]bool, len(affected))
	return slices.DeleteFunc(affected, func(w *Workload) bool {
		dup := seen[w]
		seen[w] = true
		return dup
	})
}

// lostStrictMTLS returns the workloads of a change for which mTLS was STRICT before it and
// is not after: plaintext callers, which carry no identity, reach them from then on.
func (c *Context) lostStrictMTLS() []*Workload {
	if c.Before == nil {
		return nil
	}
	return mesh.WorkloadsWhere(c.changedWorkloads(), func(w *Workload) bool {
		return mesh.MTLSStrict(c.Before, c.Settings.Root, w) && !mesh.MTLSStrict(c.State, c.Settings.Root, w)
	})
}
