package policy

import (
	"fmt"
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshguard/meshguard/policy/mesh"
)

// mtlsField is where a PeerAuthentication change weakens mTLS: its name for a DELETE, its
// ports where they are weaker than its mode, else its mode.
func mtlsField(c *Context, p *PeerAuthentication) *field.Path {
	switch {
	case c.Operation == Delete:
		return field.NewPath("metadata", "name")
	case p.Spec.Mtls != nil && p.Spec.Mtls.Mode != securityv1beta1.PeerAuthentication_MutualTLS_UNSET && mesh.WeakestPort(p, p.Spec.Mtls.Mode) != p.Spec.Mtls.Mode,
		(p.Spec.Mtls == nil || p.Spec.Mtls.Mode == securityv1beta1.PeerAuthentication_MutualTLS_UNSET) && len(p.Spec.PortLevelMtls) > 0:
		return field.NewPath("spec", "portLevelMtls")
	}
	return field.NewPath("spec", "mtls", "mode")
}

// wideScope tells whether a PeerAuthentication is namespace-wide (mesh-wide in the root
// namespace): no selector, or an empty one.
func wideScope(pa *PeerAuthentication) bool { return len(mesh.SelectorLabels(pa.Spec.Selector)) == 0 }

func peerAuthenticationRules() []Rule {
	pa := []string{KindPeerAuthentication}
	return []Rule{{
		ID: "MG601", Name: "pa-not-strict", Default: Warn, Kinds: pa, OnDelete: true,
		Summary: "A mesh- or namespace-wide PeerAuthentication in PERMISSIVE or DISABLE mode; or a change of any PeerAuthentication (its DELETE, a workload-level mode, a port's `portLevelMtls`) after which mTLS is no longer STRICT for workloads it was STRICT for.",
		Why:     "Plaintext callers are accepted and carry no identity: policies on principals or namespaces cannot tell them apart.",
		Check: judge(func(c *Context, p *PeerAuthentication) []Finding {
			if weakened := c.lostStrictMTLS(); len(weakened) > 0 {
				return []Finding{finding(mtlsField(c, p),
					fmt.Sprintf("this %s leaves mTLS no longer STRICT for %s: plaintext callers reach them, and carry no identity for authorization policies", strings.ToLower(string(c.Operation)), c.describe(weakened)),
					"keep mTLS STRICT for these workloads: on every port, at their own level, their namespace's or the mesh's")}
			}
			if c.Operation == Delete || !wideScope(p) {
				return nil
			}
			mode := securityv1beta1.PeerAuthentication_MutualTLS_UNSET
			if p.Spec.Mtls != nil {
				mode = p.Spec.Mtls.Mode
			}
			meshWide := p.Namespace == c.Settings.Root
			if mode == securityv1beta1.PeerAuthentication_MutualTLS_STRICT || (mode == securityv1beta1.PeerAuthentication_MutualTLS_UNSET && !meshWide) {
				return nil
			}
			where := "namespace " + p.Namespace
			if meshWide {
				where = "the mesh"
			}
			if mode == securityv1beta1.PeerAuthentication_MutualTLS_UNSET {
				mode = securityv1beta1.PeerAuthentication_MutualTLS_PERMISSIVE
			}
			return []Finding{finding(field.NewPath("spec", "mtls", "mode"),
				fmt.Sprintf("%s mTLS for %s accepts plaintext callers, which carry no identity for authorization policies", mode, where),
				"set mtls.mode: STRICT once every client has a sidecar")}
		}),
	}, {
		ID: "MG602", Name: "pa-duplicate-scope", Default: Deny, Kinds: pa,
		Summary: "A second mesh-wide PeerAuthentication, or a second namespace-wide one in a namespace.",
		Why:     "Istio uses the oldest and silently ignores the others.",
		Check: judge(func(c *Context, p *PeerAuthentication) []Finding {
			if !wideScope(p) {
				return nil
			}
			for _, other := range c.State.PeerAuthentications(p.Namespace) {
				if mesh.SameObject(other, p) {
					return nil // only newer ones follow
				}
				if wideScope(other) {
					return []Finding{finding(field.NewPath("spec", "selector"),
						fmt.Sprintf("%s already sets the mode for the whole namespace: Istio keeps the oldest and ignores this one", ref(other)),
						"edit "+ref(other)+" instead, or give this policy a selector")}
				}
			}
			return nil
		}),
	}}
}
