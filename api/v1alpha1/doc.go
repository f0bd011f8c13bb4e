// Package v1alpha1 holds the meshguard.io/v1alpha1 API: MeshGuardrail, the cluster-scoped
// resource in which cluster admins set org-wide guardrails for Istio JWT security.
//
// +kubebuilder:object:generate=true
// +groupName=meshguard.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the API group and version of MeshGuardrail.
	GroupVersion = schema.GroupVersion{Group: "meshguard.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &MeshGuardrail{}, &MeshGuardrailList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
