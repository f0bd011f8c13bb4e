package policy

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshguard/meshguard/policy/mesh"
)

// isJWTPolicy tells whether a policy is about tokens: every RequestAuthentication, and
// AuthorizationPolicies that match token attributes.
func isJWTPolicy(o metav1.Object) bool {
	switch o := o.(type) {
	case *RequestAuthentication:
		return true
	case *AuthorizationPolicy:
		return usesToken(o)
	}
	return false
}

func hasSelector(s mesh.Scope) bool { return len(s.Labels) > 0 || len(s.TargetRefs) > 0 }

// emptySelector tells whether a policy has `selector: {}` or `matchLabels: {}`.
func emptySelector(o metav1.Object) bool {
	switch o := o.(type) {
	case *RequestAuthentication:
		return o.Spec.Selector != nil && len(o.Spec.Selector.MatchLabels) == 0
	case *AuthorizationPolicy:
		return o.Spec.Selector != nil && len(o.Spec.Selector.MatchLabels) == 0
	case *PeerAuthentication:
		return o.Spec.Selector != nil && len(o.Spec.Selector.MatchLabels) == 0
	}
	return false
}

// selectorField names where a policy says what it selects.
func selectorField(s mesh.Scope) *field.Path {
	if len(s.TargetRefs) > 0 {
		return field.NewPath("spec", "targetRefs")
	}
	return field.NewPath("spec", "selector")
}

func scopeRules() []Rule {
	raap := []string{KindRequestAuthentication, KindAuthorizationPolicy}
	all := append(slices.Clone(raap), KindPeerAuthentication)
	return []Rule{{
		ID: "MG401", Name: "policy-missing-selector", Default: Warn, Kinds: raap,
		Summary: "A RequestAuthentication or AuthorizationPolicy outside the root namespace with no `selector` or `targetRefs`. Deny where a guardrail sets `requireSelectors`.",
		Why:     "It applies to every workload of the namespace, present and future, gateways included.",
		Check: func(c *Context) []Finding {
			s := mesh.ScopeOf(c.Object)
			if s.Namespace == c.Settings.Root || hasSelector(s) || emptySelector(c.Object) {
				return nil
			}
			f := finding(field.NewPath("spec", "selector"),
				fmt.Sprintf("no selector: the policy applies to every workload of namespace %s, present and future, gateways included", s.Namespace),
				"select the workloads it is for: selector: {matchLabels: {app: <name>}}")
			if c.Settings.RequireSelectors {
				f = f.as(Deny)
			}
			return []Finding{f}
		},
	}, {
		ID: "MG402", Name: "policy-empty-selector", Default: Deny, Kinds: all,
		Summary: "`selector: {matchLabels: {}}` or `selector: {}`.",
		Why:     "Istio treats an empty selector as no selector: the policy applies namespace-wide, or mesh-wide in the root namespace.",
		Check: func(c *Context) []Finding {
			if !emptySelector(c.Object) {
				return nil
			}
			where := "every workload of namespace " + c.Object.GetNamespace()
			if c.Object.GetNamespace() == c.Settings.Root {
				where = "every workload of the mesh"
			}
			return []Finding{finding(field.NewPath("spec", "selector", "matchLabels"),
				fmt.Sprintf("an empty selector selects everything: the policy applies to %s", where),
				"list the labels of the workloads it is for, or remove the selector if namespace-wide is meant")}
		},
	}, {
		ID: "MG403", Name: "policy-selector-matches-nothing", Default: Warn, Kinds: all,
		Summary: "A selector that matches no Pod (offline: no pod template) in scope. Policies attached to waypoints (targetRefs to a Service, ServiceEntry, GatewayClass or waypoint Gateway) select no Pod and are not judged here, nor policies attached to Gateways of class istio-waypoint or istio, whose Pods istiod deploys.",
		Why:     "The policy protects nothing: the workloads it was written for run without it.",
		Check: func(c *Context) []Finding {
			s := mesh.ScopeOf(c.Object)
			// A policy attached to a waypoint selects no Pod: whether a waypoint takes it is
			// the question of its binding, not of a selector. istiod deploys the Pods of its
			// Gateways itself: no manifest bundle holds them.
			if !hasSelector(s) || s.WaypointOnly(c.State) || s.PodsByIstiod(c.State) || !c.State.KnowsWorkloads() || len(s.SelectedBy(c.State, c.Settings.Root)) > 0 {
				return nil
			}
			return []Finding{finding(selectorField(s),
				fmt.Sprintf("no workload matches %s: the workloads this policy was written for run without it", describeSelector(s)),
				"match the labels the Pods really carry (kubectl get pods --show-labels)")}
		},
	}, {
		ID: "MG404", Name: "policy-selector-convention", Default: Deny, Kinds: raap,
		Summary: "In a namespace whose guardrail requires coverage, a JWT RequestAuthentication or AuthorizationPolicy that does not select by the coverage label.",
		Why:     "meshguard labels every Pod with the coverage label: a policy selecting by other labels misses Pods that lose or never had them.",
		Check: func(c *Context) []Finding {
			cov := c.Settings.Coverage
			if cov == nil || c.Object.GetNamespace() == c.Settings.Root || !isJWTPolicy(c.Object) {
				return nil
			}
			s := mesh.ScopeOf(c.Object)
			if len(s.TargetRefs) > 0 {
				return nil
			}
			for k, v := range cov.Labels {
				if s.Labels[k] == v {
					return nil
				}
			}
			return []Finding{finding(field.NewPath("spec", "selector", "matchLabels"),
				fmt.Sprintf("%s requires coverage here, but this policy does not select by the coverage label %s", guardrailNote(cov.Guardrails), labelString(cov.Labels)),
				fmt.Sprintf("select by the coverage label: selector: {matchLabels: {%s}}", yamlPairs(cov.Labels)))}
		},
	}, {
		ID: "MG405", Name: "root-policy-selector", Default: Warn, Kinds: raap,
		Summary: "A root-namespace RequestAuthentication or AuthorizationPolicy with a selector.",
		Why:     "In the root namespace a selector matches in every namespace: any team can opt its workloads in or out by labelling them.",
		Check: func(c *Context) []Finding {
			s := mesh.ScopeOf(c.Object)
			if s.Namespace != c.Settings.Root || len(s.Labels) == 0 {
				return nil
			}
			return []Finding{finding(field.NewPath("spec", "selector"),
				fmt.Sprintf("in the root namespace, %s matches workloads of every namespace: labelling a Pod opts it in or out", describeSelector(s)),
				"put the policy in the workloads' namespace, or make sure the label is one only meshguard sets (a coverage label)")}
		},
	}, {
		ID: "MG406", Name: "pa-selector-in-root", Default: Deny, Kinds: []string{KindPeerAuthentication},
		Summary: "A PeerAuthentication with a selector in the root namespace.",
		Why:     "Istio ignores it: the mTLS mode it sets is not in force anywhere.",
		Check: func(c *Context) []Finding {
			s := mesh.ScopeOf(c.Object)
			if s.Namespace != c.Settings.Root || len(s.Labels) == 0 {
				return nil
			}
			return []Finding{finding(field.NewPath("spec", "selector"),
				"Istio ignores PeerAuthentications with a selector in the root namespace: this mTLS mode is in force nowhere",
				"move the policy to the workloads' namespace, or drop the selector to make it mesh-wide")}
		},
	}, {
		ID: "MG407", Name: "targetref-not-applicable", Default: Warn, Kinds: raap,
		Summary: "`targetRef(s)` to something that is not a Gateway, GatewayClass, Service or ServiceEntry (MG807 for JWT policies), or to a Service that does not exist.",
		Why:     "Istio ignores the reference: the policy applies nowhere.",
		Check: func(c *Context) []Finding {
			s := mesh.ScopeOf(c.Object)
			var out []Finding
			svcs := c.State.Services(s.Namespace)
			for i, r := range s.TargetRefs {
				path := field.NewPath("spec", "targetRefs").Index(i)
				switch {
				case !slices.Contains(mesh.AttachableKinds, r.Kind) && !isJWTPolicy(c.Object): // JWT policies: MG807
					out = append(out, finding(path.Child("kind"),
						fmt.Sprintf("Istio attaches policies only to Gateway, GatewayClass, Service and ServiceEntry, not %q: the policy applies nowhere", r.Kind),
						"target the Gateway or the Service (through its waypoint), or use a selector for sidecar workloads"))
				case r.Kind == "Service" && len(svcs) > 0 && !slices.ContainsFunc(svcs, func(sv *corev1.Service) bool { return sv.Name == r.Name }):
					out = append(out, finding(path.Child("name"),
						fmt.Sprintf("no Service %q in namespace %s: the policy applies nowhere", r.Name, s.Namespace),
						"name an existing Service"))
				}
			}
			return out
		},
	}}
}

func describeSelector(s mesh.Scope) string {
	if len(s.TargetRefs) > 0 {
		return "the gateways in targetRefs"
	}
	return "selector " + labelString(s.Labels)
}

// yamlPairs renders labels as YAML flow pairs: a: "b", c: "d".
func yamlPairs(l map[string]string) string {
	var out string
	for i, k := range mesh.SortedKeys(l) {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%s: %q", k, l[k])
	}
	return out
}
