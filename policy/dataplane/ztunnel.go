package dataplane

import (
	"slices"

	securityv1beta1 "istio.io/api/security/v1beta1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshguard/meshguard/policy/mesh"
	"github.com/meshguard/meshguard/policy/rulefields"
)

// ZtunnelNoOpClause returns the path of a clause of a DENY rule that ztunnel cannot match:
// a from or to list whose every entry names only HTTP-level fields, or a when condition on
// an HTTP-level key. ztunnel receives such a clause empty and skips it, so the rule never
// fires (istio#61126). nil when every clause keeps an L4 part.
func ZtunnelNoOpClause(r *apRule, at *field.Path) *field.Path {
	if len(r.From) > 0 && !slices.ContainsFunc(r.From, func(f *securityv1beta1.Rule_From) bool { return f.Source != nil && rulefields.L4Source(f.Source) }) {
		return at.Child("from")
	}
	if len(r.To) > 0 && !slices.ContainsFunc(r.To, func(t *securityv1beta1.Rule_To) bool {
		return t.Operation != nil && rulefields.L4Operation(t.Operation)
	}) {
		return at.Child("to")
	}
	for k, w := range r.When {
		if rulefields.ZtunnelOf(w.Key).HTTPLevel() {
			return at.Child("when").Index(k)
		}
	}
	return nil
}

// ZtunnelEnforcement is how ztunnel enforces the AuthorizationPolicies of an ambient
// workload: those without targetRefs, an ALLOW rule naming any HTTP field dropped, a DENY
// rule with a clause it cannot match skipped, and the other DENY rules cut to their L4
// part (istiod's handleRule, pilot/pkg/serviceregistry/ambient/authorization.go).
func ZtunnelEnforcement(aps []*mesh.AuthorizationPolicy, plaintext bool) Enforcement {
	var sent []*mesh.AuthorizationPolicy
	for _, ap := range aps {
		if len(mesh.ScopeOf(ap).TargetRefs) == 0 {
			sent = append(sent, ap)
		}
	}
	return EnforcementBy(sent, plaintext, true)
}

// ztunnelRule is a rule as istiod sends it to ztunnel, or why it sends none: an ALLOW rule
// naming any HTTP field is dropped, a DENY rule with a clause of HTTP fields only is
// skipped, and the other DENY rules keep their L4 part.
func ztunnelRule(ap *mesh.AuthorizationPolicy, r *apRule, c Rule) (Rule, string) {
	c, holds := c.withoutUnsent()
	switch {
	case !holds:
		return Rule{}, "its sources name trust domains only, which istiod does not send to ztunnel: they arrive empty and match no connection"
	case IsAllow(ap) && rulefields.HTTPLevel(r):
		return Rule{}, "it names an HTTP field: ztunnel drops the rule, which admits nothing"
	case IsAllow(ap):
		return c, ""
	case ZtunnelNoOpClause(r, nil) != nil:
		return Rule{}, "a clause of HTTP fields only: ztunnel skips the rule, which denies nothing"
	}
	return c.l4Only(), ""
}

// withoutUnsent is a rule as istiod sends it to ztunnel, without the fields it never
// sends (trust domains: handleRule does not read them): a source that named only them
// arrives as an empty match, which ztunnel's rbac.rs never holds. holds is false when no
// source is left that can: the rule matches no connection.
func (r Rule) withoutUnsent() (c Rule, holds bool) {
	unsent := func(c Condition) bool { return c.ZtunnelReading() == rulefields.ZtunnelUnsent }
	if !slices.ContainsFunc(r.From, func(e []Condition) bool { return slices.ContainsFunc(e, unsent) }) {
		return r, true
	}
	var from [][]Condition
	for _, e := range r.From {
		if kept := slices.DeleteFunc(slices.Clone(e), unsent); len(kept) > 0 {
			from = append(from, kept)
		}
	}
	r.From = from
	return r, len(from) > 0
}

// l4Only is a DENY rule as istiod translates it for ztunnel: its HTTP fields stripped, an
// entry left with none skipped (an empty match), so that the rule fires on its L4 part
// alone (MG804). Rules with a clause made only of HTTP fields are not sent at all.
func (r Rule) l4Only() Rule {
	notL4 := func(c Condition) bool { return c.ZtunnelReading() != rulefields.ZtunnelL4 }
	l4 := func(entries [][]Condition) [][]Condition {
		var out [][]Condition
		for _, e := range entries {
			if kept := slices.DeleteFunc(slices.Clone(e), notL4); len(kept) > 0 {
				out = append(out, kept)
			}
		}
		return out
	}
	return Rule{From: l4(r.From), To: l4(r.To), When: slices.DeleteFunc(slices.Clone(r.When), notL4)}
}
