package policy

import (
	"maps"

	"google.golang.org/protobuf/proto"
	securityv1beta1 "istio.io/api/security/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/policy/dataplane"
)

// MayOpen tells whether a change of a security policy may leave a workload less protected
// than it is now: the changes whose verdict (MG303 and the rules like it) rests on the live
// state being current, and which two at once could together open what neither opens
// alone. Every UPDATE and DELETE may; a CREATE only of what admits more: an ALLOW policy,
// or a PeerAuthentication that is not STRICT on every port. A new RequestAuthentication,
// a DENY, CUSTOM or AUDIT AuthorizationPolicy, or a STRICT PeerAuthentication only adds
// checks: whatever is written beside it, the workload is at least as protected as without.
// An UPDATE that changes nothing Istio reads (a re-apply) changes no protection either.
func MayOpen(op Operation, obj, old metav1.Object) bool {
	switch op {
	case Update:
		return !sameEffect(obj, old)
	case Delete:
		return true
	}
	switch o := obj.(type) {
	case *AuthorizationPolicy:
		return dataplane.IsAllow(o)
	case *PeerAuthentication:
		return !strictEverywhere(o)
	}
	return false
}

// strictEverywhere tells whether a PeerAuthentication requires mTLS on all its ports.
func strictEverywhere(pa *PeerAuthentication) bool {
	const strict = securityv1beta1.PeerAuthentication_MutualTLS_STRICT
	if pa.Spec.GetMtls().GetMode() != strict {
		return false
	}
	for _, port := range pa.Spec.GetPortLevelMtls() {
		if port.GetMode() != strict {
			return false
		}
	}
	return true
}

// sameEffect tells whether two versions of a security policy hold the same spec, labels and
// annotations: all Istio reads of them.
func sameEffect(a, b metav1.Object) bool {
	if a == nil || b == nil || !maps.Equal(a.GetLabels(), b.GetLabels()) || !maps.Equal(a.GetAnnotations(), b.GetAnnotations()) {
		return false
	}
	switch a := a.(type) {
	case *AuthorizationPolicy:
		b, ok := b.(*AuthorizationPolicy)
		return ok && proto.Equal(&a.Spec, &b.Spec)
	case *RequestAuthentication:
		b, ok := b.(*RequestAuthentication)
		return ok && proto.Equal(&a.Spec, &b.Spec)
	case *PeerAuthentication:
		b, ok := b.(*PeerAuthentication)
		return ok && proto.Equal(&a.Spec, &b.Spec)
	}
	return false
}
