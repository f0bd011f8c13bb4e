package mesh

import (
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/meshguard/meshguard/api/v1alpha1"
)

// DefaultRootNamespace is Istio's default meshConfig.rootNamespace.
const DefaultRootNamespace = "istio-system"

// Settings are the guardrails in force in one namespace, merged so that the stricter wins.
type Settings struct {
	// Root is Istio's root namespace, as the guardrails state it.
	Root string
	// Actions are rule actions set by guardrails; where several set one rule, the strictest.
	Actions map[string]Action
	// RequireSelectors makes MG401 deny.
	RequireSelectors bool
	// WarnOnly: every guardrail governing the namespace sets enforcementAction: warn, so
	// admission admits what it would deny, with the findings as warnings.
	WarnOnly bool
	// TrustedIssuers holds one list per guardrail that sets one: an issuer must be in each.
	TrustedIssuers []IssuerList
	// Coverage is nil where no guardrail requires coverage.
	Coverage *Coverage
	// NamespaceLabels are the labels of the namespace: they tell Istio's data plane there
	// (istio.io/dataplane-mode, istio-injection) as they tell the guardrails that govern it.
	NamespaceLabels map[string]string
	// Suppressible are the deny rules an object may suppress on itself: those any guardrail
	// governing the namespace names.
	Suppressible []string
}

// IssuerList is the trustedIssuers of one guardrail.
type IssuerList struct {
	Guardrail string
	Issuers   []v1alpha1.TrustedIssuer
}

// Coverage is what coverage guardrails ask of the Pods of a namespace.
type Coverage struct {
	// Labels every Pod must carry, with {namespace} expanded.
	Labels map[string]string
	// AllowOptOut is true only if every guardrail requiring coverage allows opting out.
	AllowOptOut bool
	// Guardrails are the names of the guardrails that require coverage.
	Guardrails []string
}

// RootNamespace returns Istio's root namespace as the guardrails state it: the first one set,
// by guardrail name, or istio-system.
func RootNamespace(rails []*MeshGuardrail) string {
	root := ""
	name := ""
	for _, g := range rails {
		if g.Spec.RootNamespace != "" && (root == "" || g.Name < name) {
			root, name = g.Spec.RootNamespace, g.Name
		}
	}
	if root == "" {
		return DefaultRootNamespace
	}
	return root
}

// Governs tells whether guardrail g applies to a namespace with the given labels. A selector
// that does not parse governs nothing; ValidateGuardrail rejects it at admission.
func Governs(g *MeshGuardrail, nsLabels map[string]string) bool {
	if g.Spec.NamespaceSelector == nil {
		return true
	}
	sel, err := metav1.LabelSelectorAsSelector(g.Spec.NamespaceSelector)
	return err == nil && sel.Matches(labels.Set(nsLabels))
}

// strictness orders actions: deny is stricter than warn, warn than off.
func strictness(a Action) int {
	return map[Action]int{Off: 0, Warn: 1, Deny: 2}[a]
}

// MergeGuardrails merges the guardrails governing a namespace, given its labels.
// Cluster-scoped objects (empty namespace) are governed by every guardrail.
func MergeGuardrails(guardrails []*MeshGuardrail, namespace string, nsLabels map[string]string) Settings {
	rails := slices.Clone(guardrails)
	s := Settings{Root: RootNamespace(rails), NamespaceLabels: nsLabels}
	slices.SortFunc(rails, func(a, b *MeshGuardrail) int { return strings.Compare(a.Name, b.Name) })
	governing := 0
	warnOnly := true
	for _, g := range rails {
		if namespace != "" && !Governs(g, nsLabels) {
			continue
		}
		governing++
		warnOnly = warnOnly && g.Spec.EnforcementAction == v1alpha1.EnforcementAction(Warn)
		for id, a := range g.Spec.Rules {
			if cur, ok := s.Actions[id]; !ok || strictness(a) > strictness(cur) {
				if s.Actions == nil {
					s.Actions = map[string]Action{}
				}
				s.Actions[id] = a
			}
		}
		s.RequireSelectors = s.RequireSelectors || g.Spec.RequireSelectors
		for _, id := range g.Spec.Suppressible {
			if !slices.Contains(s.Suppressible, id) {
				s.Suppressible = append(s.Suppressible, id)
			}
		}
		if g.Spec.JWT != nil && len(g.Spec.JWT.TrustedIssuers) > 0 {
			s.TrustedIssuers = append(s.TrustedIssuers, IssuerList{g.Name, g.Spec.JWT.TrustedIssuers})
		}
		if cov := g.Spec.Coverage; cov != nil && cov.Required && namespace != "" {
			if s.Coverage == nil {
				s.Coverage = &Coverage{Labels: map[string]string{}, AllowOptOut: true}
			}
			for k, v := range cov.PodLabels {
				if _, set := s.Coverage.Labels[k]; !set {
					s.Coverage.Labels[k] = strings.ReplaceAll(v, "{namespace}", namespace)
				}
			}
			s.Coverage.AllowOptOut = s.Coverage.AllowOptOut && cov.AllowOptOut
			s.Coverage.Guardrails = append(s.Coverage.Guardrails, g.Name)
		}
	}
	s.WarnOnly = governing > 0 && warnOnly
	return s
}
