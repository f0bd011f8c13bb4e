package policy

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/meshguard/meshguard/policy/mesh"
)

// Istio's sidecar controls on Pods, read by the rules (kinds keeps them in its cache).
const (
	SidecarInjectLabel         = mesh.SidecarInjectLabel
	ExcludeInboundAnnotation   = mesh.ExcludeInboundAnnotation
	IncludeInboundAnnotation   = mesh.IncludeInboundAnnotation
	InterceptionModeAnnotation = mesh.InterceptionModeAnnotation
)

// optedOut tells whether a workload asks to be left out of coverage.
func optedOut(w *Workload) bool { return w.Annotations[CoverageAnnotation] == CoverageExempt }

// coverageLabels is MG501's Label: the coverage labels a workload lacks where guardrails
// require coverage, unless it opted out where they allow it. A label the workload sets to
// another value is never overwritten (a controller may select on it), nor is a value
// patched in that is no valid label value: MG506 judges both.
func coverageLabels(s Settings, w *Workload) (missing map[string]string, guardrails []string) {
	for k, v := range requiredLabels(s, w) {
		if _, has := w.Labels[k]; has || len(validation.IsValidLabelValue(v)) > 0 {
			continue
		}
		if missing == nil {
			missing = map[string]string{}
		}
		missing[k] = v
	}
	if missing == nil {
		return nil, nil
	}
	return missing, s.Coverage.Guardrails
}

// requiredLabels are the coverage labels guardrails require of a workload: none for a
// proxy, or for a workload opted out where they allow it.
func requiredLabels(s Settings, w *Workload) map[string]string {
	if s.Coverage == nil || mesh.IsProxy(w) || (optedOut(w) && s.Coverage.AllowOptOut) {
		return nil
	}
	return s.Coverage.Labels
}

func podRules() []Rule {
	pod := []string{KindPod}
	return []Rule{{
		ID: "MG501", Name: "pod-coverage-label", Default: Warn, Kinds: pod,
		Summary: "Adds the coverage labels, and an annotation naming the guardrails, to Pods of covered namespaces (offline: to pod templates, before the other rules run), Istio's gateway and waypoint proxies excepted. Any action but `off` labels.",
		Why:     "The mission: JWT policies written against the coverage label cover every Pod.",
		Label:   coverageLabels,
	}, {
		ID: "MG502", Name: "pod-coverage-label-removed", Default: Deny, Kinds: pod,
		Summary: "A Pod UPDATE that removes or changes a coverage label.",
		Why:     "The Pod silently leaves the policies that select it by that label: its requests are no longer checked.",
		Check: judge(func(c *Context, w *Workload) []Finding {
			old, ok := c.OldObject.(*Workload)
			cov := c.Settings.Coverage
			if c.Operation != Update || !ok || cov == nil {
				return nil
			}
			var out []Finding
			for _, k := range mesh.SortedKeys(cov.Labels) {
				if v, had := old.Labels[k]; had && v == cov.Labels[k] && w.Labels[k] != v {
					out = append(out, finding(field.NewPath("metadata", "labels").Key(k),
						fmt.Sprintf("removing coverage label %s=%s takes the Pod out of the JWT policies that select it: its requests go unchecked", k, v),
						fmt.Sprintf("keep the label %s=%s (%s requires it)", k, v, guardrailNote(cov.Guardrails))))
				}
			}
			return out
		}),
	}, {
		ID: "MG503", Name: "pod-not-covered", Default: Warn, Kinds: pod,
		Summary: "A Pod in a covered namespace that no RequestAuthentication with an enforcing AuthorizationPolicy selects.",
		Why:     "Nothing checks its tokens: requests without one reach it.",
		Check: judge(func(c *Context, w *Workload) []Finding {
			if c.Operation == Update || c.Settings.Coverage == nil || optedOut(w) || mesh.IsProxy(w) || c.protection(c.State, w).RequiresToken() {
				return nil
			}
			fix := fmt.Sprintf("apply a RequestAuthentication and an ALLOW policy with requestPrincipals selecting %s", labelString(c.Settings.Coverage.Labels))
			if mesh.InAmbient(c.State, w) {
				fix = "the Pod runs in ambient mode: bind its Service to a waypoint and attach a RequestAuthentication and an ALLOW policy with requestPrincipals to the Service (targetRefs)"
			}
			return []Finding{finding(field.NewPath("metadata", "labels"),
				fmt.Sprintf("%s requires coverage, but no RequestAuthentication with an AuthorizationPolicy requiring a token selects this Pod: requests without a token reach it", guardrailNote(c.Settings.Coverage.Guardrails)),
				fix)}
		}),
	}, {
		ID: "MG504", Name: "pod-not-enforceable", Default: Warn, Kinds: pod,
		Summary: "A covered or JWT-selected Pod with sidecar injection disabled (`sidecar.istio.io/inject` set to anything but y, yes, true or on, as Istio's injector reads it, or `istio-injection: disabled` on its namespace), `hostNetwork`, inbound ports excluded from interception (`excludeInboundPorts`, an `includeInboundPorts` other than `*`), or `interceptionMode: NONE`. Istio's gateway and waypoint Pods are proxies, not workloads: they enforce the policies attached to them. Ambient Pods are MG813's.",
		Why:     "Istio cannot enforce anything on it: its policies are dead letters.",
		Check: judge(func(c *Context, w *Workload) []Finding {
			// An ambient Pod needs no sidecar: MG813 judges what ztunnel does not intercept.
			if c.Operation == Update || mesh.IsProxy(w) || mesh.MeantForAmbient(c.State, w) {
				return nil
			}
			path, why := mesh.NotEnforceable(w)
			if why == "" && mesh.InjectionDisabled(c.State, w) {
				path, why = field.NewPath("metadata", "namespace"), "its namespace disables sidecar injection (istio-injection: disabled)"
			}
			if why == "" || (c.Settings.Coverage == nil && len(c.protection(c.State, w).RAs) == 0) {
				return nil
			}
			return []Finding{finding(path,
				fmt.Sprintf("%s: Istio enforces no JWT policy on this Pod, and requests reach it unchecked", why),
				"let the sidecar intercept the Pod's inbound traffic: remove the opt-out, or exempt the Pod from coverage on purpose")}
		}),
	}, {
		ID: "MG505", Name: "pod-opt-out-denied", Default: Deny, Kinds: pod,
		Summary: "A Pod annotated `meshguard.io/coverage: exempt` where the guardrail does not allow opting out.",
		Why:     "Organisation policy: every Pod of the namespace must be covered.",
		Check: judge(func(c *Context, w *Workload) []Finding {
			cov := c.Settings.Coverage
			if !optedOut(w) || cov == nil || cov.AllowOptOut {
				return nil
			}
			if old, ok := c.OldObject.(*Workload); ok && optedOut(old) {
				return nil // judged when it was set
			}
			return []Finding{finding(field.NewPath("metadata", "annotations").Key(CoverageAnnotation),
				fmt.Sprintf("%s does not allow Pods to opt out of coverage here", guardrailNote(cov.Guardrails)),
				"remove the meshguard.io/coverage annotation, or ask the cluster admins for allowOptOut")}
		}),
	}, {
		ID: "MG506", Name: "pod-coverage-label-missing", Default: Deny, Kinds: pod,
		Summary: "A new Pod (offline: a pod template) of a covered namespace without a coverage label the guardrails require: the mutating webhook did not run (it timed out, or meshguard was starting), or the Pod sets the label to another value, which meshguard never overwrites. Warn where the required value is no valid label value (a `{namespace}` expansion over 63 characters), which cannot be patched in.",
		Why:     "The policies of a covered namespace select its Pods by those labels: this Pod would run outside them.",
		Check: judge(func(c *Context, w *Workload) []Finding {
			if c.Operation == Update || c.Operation == Delete {
				return nil
			}
			required := requiredLabels(c.Settings, w)
			var out []Finding
			for _, k := range mesh.SortedKeys(required) {
				want, at := required[k], field.NewPath("metadata", "labels").Key(k)
				have, has := w.Labels[k]
				switch {
				case has && have == want:
				case has:
					out = append(out, finding(at,
						fmt.Sprintf("the Pod sets %s=%q, and %s requires %q: meshguard does not overwrite a label a Pod sets", k, have, guardrailNote(c.Settings.Coverage.Guardrails), want),
						fmt.Sprintf("remove the label from the Pod (template), or set it to %q", want)))
				case len(validation.IsValidLabelValue(want)) > 0:
					out = append(out, finding(at,
						fmt.Sprintf("%s requires %s=%q here, which is no valid label value (%s): no Pod of this namespace can be labelled", guardrailNote(c.Settings.Coverage.Guardrails), k, want, strings.Join(validation.IsValidLabelValue(want), "; ")),
						"shorten the guardrail's podLabels value, or exempt this namespace").as(Warn))
				default:
					out = append(out, finding(at,
						fmt.Sprintf("the Pod lacks %s=%q, which %s requires: meshguard's mutating webhook did not label it (it timed out, or meshguard was starting)", k, want, guardrailNote(c.Settings.Coverage.Guardrails)),
						"create the Pod again (its controller retries), or add the label to its template"))
				}
			}
			return out
		}),
	}}
}
