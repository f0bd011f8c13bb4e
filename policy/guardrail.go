package policy

import (
	"fmt"
	"regexp"
	"strings"

	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshguard/meshguard/policy/mesh"
)

// Annotations meshguard reads and writes on Pods.
const (
	// CoverageAnnotation set to CoverageExempt opts a Pod out of coverage, where allowed.
	CoverageAnnotation = "meshguard.io/coverage"
	CoverageExempt     = "exempt"
	// CoveredByAnnotation records which guardrails labelled a Pod.
	CoveredByAnnotation = "meshguard.io/covered-by"
)

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
	for _, id := range mesh.SortedKeys(g.Spec.Rules) {
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
		for _, k := range mesh.SortedKeys(cov.PodLabels) {
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
			for _, ns := range mesh.SortedKeys(namespaces) {
				if !mesh.Governs(g, namespaces[ns]) {
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
	return fmt.Sprintf("MeshGuardrails %s", mesh.QuoteList(names))
}
