package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshguard/meshguard/api/v1alpha1"
)

// DefaultRootNamespace is Istio's default meshConfig.rootNamespace.
const DefaultRootNamespace = "istio-system"

// Annotations meshguard reads and writes on Pods.
const (
	// CoverageAnnotation set to CoverageExempt opts a Pod out of coverage, where allowed.
	CoverageAnnotation = "meshguard.io/coverage"
	CoverageExempt     = "exempt"
	// CoveredByAnnotation records which guardrails labelled a Pod.
	CoveredByAnnotation = "meshguard.io/covered-by"
)

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

// governs tells whether guardrail g applies to a namespace with the given labels. A selector
// that does not parse governs nothing; ValidateGuardrail rejects it at admission.
func governs(g *MeshGuardrail, nsLabels map[string]string) bool {
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
		if namespace != "" && !governs(g, nsLabels) {
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

var ruleIDPattern = regexp.MustCompile(`^MG[0-9]{3}$`)

// ValidateGuardrail checks a MeshGuardrail against the catalog and Kubernetes' syntax rules:
// rule IDs that exist, actions that mean something, selectors and labels that parse.
// namespaces are the cluster's, by name with their labels, where known (nil offline): a
// coverage label value with {namespace} must be a valid label value in each it governs.
func (e *Engine) ValidateGuardrail(g *MeshGuardrail, namespaces map[string]map[string]string) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if g.Spec.NamespaceSelector != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(g.Spec.NamespaceSelector,
			metav1validation.LabelSelectorValidationOptions{}, spec.Child("namespaceSelector"))...)
	}
	if ns := g.Spec.RootNamespace; ns != "" {
		for _, msg := range validation.IsDNS1123Label(ns) {
			errs = append(errs, field.Invalid(spec.Child("rootNamespace"), ns, msg))
		}
	}
	for _, id := range sortedKeys(g.Spec.Rules) {
		p := spec.Child("rules").Key(id)
		if _, known := e.Rule(id); !known {
			detail := "not a meshguard rule ID"
			if !ruleIDPattern.MatchString(id) {
				detail = "rule IDs look like MG101"
			}
			errs = append(errs, field.Invalid(p, id, detail+"; see the rule reference"))
		}
		switch a := g.Spec.Rules[id]; a {
		case Deny, Warn, Off:
		default:
			errs = append(errs, field.NotSupported(p, a, []string{string(Deny), string(Warn), string(Off)}))
		}
	}
	for i, id := range g.Spec.Suppressible {
		if _, known := e.Rule(id); !known {
			errs = append(errs, field.Invalid(spec.Child("suppressible").Index(i), id, "not a meshguard rule ID; see the rule reference"))
		}
	}
	if g.Spec.JWT != nil {
		for i, ti := range g.Spec.JWT.TrustedIssuers {
			if ti.Issuer == "" {
				errs = append(errs, field.Required(spec.Child("jwt", "trustedIssuers").Index(i).Child("issuer"), "the issuer a jwtRule must name"))
			}
		}
	}
	if cov := g.Spec.Coverage; cov != nil {
		p := spec.Child("coverage", "podLabels")
		if cov.Required && len(cov.PodLabels) == 0 {
			errs = append(errs, field.Required(p, "coverage.required needs the labels Pods must carry"))
		}
		for _, k := range sortedKeys(cov.PodLabels) {
			for _, msg := range validation.IsQualifiedName(k) {
				errs = append(errs, field.Invalid(p.Key(k), k, msg))
			}
			// Check the syntax of the value as written for a one-letter namespace; the
			// length depends on the namespace: checked for those there are, and when a Pod
			// is labelled (MG506).
			v := strings.ReplaceAll(cov.PodLabels[k], "{namespace}", "n")
			for _, msg := range validation.IsValidLabelValue(v) {
				errs = append(errs, field.Invalid(p.Key(k), cov.PodLabels[k], msg))
			}
			if !strings.Contains(cov.PodLabels[k], "{namespace}") {
				continue
			}
			for _, ns := range sortedKeys(namespaces) {
				if !governs(g, namespaces[ns]) {
					continue
				}
				expanded := strings.ReplaceAll(cov.PodLabels[k], "{namespace}", ns)
				for _, msg := range validation.IsValidLabelValue(expanded) {
					errs = append(errs, field.Invalid(p.Key(k), cov.PodLabels[k], fmt.Sprintf("in namespace %s it is %q: %s", ns, expanded, msg)))
				}
			}
		}
	}
	return errs
}

// guardrailNote names the guardrails behind a setting, for messages.
func guardrailNote(names []string) string {
	if len(names) == 1 {
		return fmt.Sprintf("MeshGuardrail %q", names[0])
	}
	return fmt.Sprintf("MeshGuardrails %s", quoteList(names))
}
