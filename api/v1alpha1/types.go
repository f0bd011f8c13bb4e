package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Kind is the kind of the guardrail resource.
const Kind = "MeshGuardrail"

// RuleAction is what a rule does when it finds something: deny the change, admit it with a
// warning, or nothing at all.
// +kubebuilder:validation:Enum=deny;warn;"off"
type RuleAction string

const (
	ActionDeny RuleAction = "deny"
	ActionWarn RuleAction = "warn"
	ActionOff  RuleAction = "off"
)

// EnforcementAction is what admission does with deny findings: deny, or warn only.
// +kubebuilder:validation:Enum=deny;warn
type EnforcementAction string

// MeshGuardrailSpec is the org-wide configuration for the namespaces the guardrail governs.
type MeshGuardrailSpec struct {
	// NamespaceSelector picks the namespaces this guardrail governs, by their labels.
	// Unset, it governs every namespace.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// RootNamespace is Istio's root namespace (meshConfig.rootNamespace): policies there apply
	// mesh-wide. Defaults to istio-system.
	// +optional
	RootNamespace string `json:"rootNamespace,omitempty"`

	// Rules sets the action of a rule, by ID (for example MG301: deny). Quote "off" in YAML.
	// +optional
	Rules map[string]RuleAction `json:"rules,omitempty"`

	// EnforcementAction is what admission does with a deny finding in the namespaces the
	// guardrail governs: deny the change (the default), or admit it with the finding as a
	// warning, to roll meshguard out into a running cluster before enforcing it. Where
	// several guardrails govern a namespace, the stricter wins.
	// +optional
	EnforcementAction EnforcementAction `json:"enforcementAction,omitempty"`

	// Suppressible names the deny rules whose findings an object in the namespaces governed
	// may accept on itself, with the annotation ignore.meshguard.io/<rule ID>: "<reason>".
	// Warn findings may always be accepted so; deny findings only of the rules named here.
	// +optional
	// +listType=set
	Suppressible []string `json:"suppressible,omitempty"`

	// RequireSelectors denies RequestAuthentications and AuthorizationPolicies that have no
	// selector or targetRefs (MG401 as deny).
	// +optional
	RequireSelectors bool `json:"requireSelectors,omitempty"`

	// JWT restricts what RequestAuthentications may trust.
	// +optional
	JWT *JWTGuardrail `json:"jwt,omitempty"`

	// Coverage makes meshguard label Pods so that JWT policies written against the labels
	// cover them.
	// +optional
	Coverage *CoverageGuardrail `json:"coverage,omitempty"`
}

// JWTGuardrail lists the token issuers RequestAuthentications may use (MG117).
type JWTGuardrail struct {
	// TrustedIssuers are the only issuers RequestAuthentications may configure. Empty means
	// any issuer.
	// +optional
	// +listType=atomic
	TrustedIssuers []TrustedIssuer `json:"trustedIssuers,omitempty"`
}

// TrustedIssuer is one issuer RequestAuthentications may use, and how.
type TrustedIssuer struct {
	// Issuer must equal a jwtRule's issuer byte for byte.
	// +kubebuilder:validation:MinLength=1
	Issuer string `json:"issuer"`

	// JwksURI, when set, is the only key set a jwtRule with this issuer may use.
	// +optional
	JwksURI string `json:"jwksUri,omitempty"`

	// Audiences, when set, are the only audiences a jwtRule with this issuer may accept.
	// +optional
	// +listType=atomic
	Audiences []string `json:"audiences,omitempty"`
}

// CoverageGuardrail makes every Pod of the governed namespaces carry the labels JWT policies
// select (MG501) and keep them (MG502).
type CoverageGuardrail struct {
	// Required turns coverage on.
	// +optional
	Required bool `json:"required,omitempty"`

	// PodLabels are added to every new Pod. A value may use {namespace}, replaced by the
	// Pod's namespace.
	// +optional
	PodLabels map[string]string `json:"podLabels,omitempty"`

	// AllowOptOut lets a Pod annotated meshguard.io/coverage: exempt skip coverage. When
	// false such a Pod is denied (MG505).
	// +optional
	AllowOptOut bool `json:"allowOptOut,omitempty"`
}

// MeshGuardrail sets org-wide guardrails for Istio JWT security in the namespaces it selects.
// Where several govern one namespace, the stricter setting wins.
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=mgr
// +kubebuilder:printcolumn:name="Root",type=string,JSONPath=`.spec.rootNamespace`
// +kubebuilder:printcolumn:name="Selectors",type=boolean,JSONPath=`.spec.requireSelectors`
// +kubebuilder:printcolumn:name="Coverage",type=boolean,JSONPath=`.spec.coverage.required`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MeshGuardrail struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec MeshGuardrailSpec `json:"spec,omitempty"`
}

// MeshGuardrailList is a list of MeshGuardrails.
// +kubebuilder:object:root=true
type MeshGuardrailList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MeshGuardrail `json:"items"`
}
