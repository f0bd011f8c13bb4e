package policy

import (
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshguard/meshguard/policy/dataplane"
	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/rulefields"
)

// ztunnelWorkloads returns the ambient workloads a policy reaches through ztunnel: those it
// selects (or its namespace's, or the mesh's), unless it is attached by targetRefs.
func (c *Context) ztunnelWorkloads(o metav1.Object) []*Workload {
	if len(mesh.ScopeOf(o).TargetRefs) > 0 {
		return nil
	}
	return c.workloadsWhere(o, func(f workloadFacts) bool { return f.Ambient })
}

// mixedEntry returns the path of a from or to entry of a rule that names both L4 and
// HTTP-level fields, or nil: ztunnel keeps the L4 part alone.
func mixedEntry(r *apRule, at *field.Path) *field.Path {
	for j, f := range r.From {
		if s := f.Source; s != nil && rulefields.L4Source(s) && rulefields.HTTPSource(s) {
			return at.Child("from").Index(j).Child("source")
		}
	}
	for j, t := range r.To {
		if o := t.Operation; o != nil && rulefields.L4Operation(o) && rulefields.HTTPOperation(o) {
			return at.Child("to").Index(j).Child("operation")
		}
	}
	return nil
}

// silentField is a field of a rule ztunnel drops with no status, and what dropping it does.
type silentField struct {
	path   *field.Path
	effect string
}

// silentFields returns the fields of a rule ztunnel drops with no status: trust domains,
// and the when keys it does not take although sidecars treat them at L4.
func silentFields(r *apRule, at *field.Path) []silentField {
	var out []silentField
	for j, f := range r.From {
		if s := f.Source; s != nil && rulefields.UnsentSource(s) {
			out = append(out, silentField{at.Child("from").Index(j).Child("source"),
				"a source of trust domains only arrives empty and matches no connection; beside other fields they are not checked"})
		}
	}
	for k, w := range r.When {
		if rulefields.ZtunnelOf(w.Key) == rulefields.ZtunnelHTTPSilent {
			out = append(out, silentField{at.Child("when").Index(k).Child("key"), "it is not checked"})
		}
	}
	return out
}

// ztunnelAdmits tells whether ztunnel lets some connection without a token reach an
// ambient workload, under the policies it enforces for it.
func ztunnelAdmits(st State, root string, w *Workload) bool {
	return dataplane.ZtunnelEnforcement(mesh.ForWorkload(w, root, st.AuthorizationPolicies), !mesh.MTLSStrict(st, root, w)).AdmitsTokenless()
}

// bypassesWaypoint returns a caller other than the waypoint that ztunnel lets reach a
// workload directly, described, or "" when ztunnel admits only the waypoint.
func bypassesWaypoint(st State, root string, w *Workload, gw *Gateway, aps []*AuthorizationPolicy) string {
	e := dataplane.ZtunnelEnforcement(aps, !mesh.MTLSStrict(st, root, w))
	peers := slices.DeleteFunc(e.Peers(), func(p request) bool { return p[rulefields.PeerPrincipal] == mesh.WaypointIdentity(gw) })
	found, decided := e.Find(request{}, false, peers, e.Admits)
	switch {
	case !decided:
		return fmt.Sprintf("callers meshguard cannot rule out: the policies name more than %d combinations of values to try", dataplane.MaxRequestClasses)
	case found == nil:
		return ""
	case found[rulefields.PeerPrincipal] == "":
		return "a caller without mTLS"
	case found[rulefields.PeerPrincipal] != dataplane.AnyOther:
		return found[rulefields.PeerPrincipal]
	}
	return "any workload of the mesh, by the Pods' addresses"
}
