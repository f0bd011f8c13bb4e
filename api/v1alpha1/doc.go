// Package v1alpha1 holds the meshguard.io/v1alpha1 API: MeshGuardrail, the cluster-scoped
// resource in which cluster admins set org-wide guardrails for Istio JWT security.
//
// +kubebuilder:object:generate=true
// +groupName=meshguard.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API group and version of MeshGuardrail.
	GroupVersion = schema.GroupVersion{Group: "meshguard.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func init() {
	SchemeBuilder.Register(&MeshGuardrail{}, &MeshGuardrailList{})
}
