package webhook

import (
	"encoding/json"
	"fmt"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshguard/meshguard/api/v1alpha1"
	"github.com/meshguard/meshguard/policy"
)

// decoders turn the raw object of a request, by group/kind, into what the engine judges.
// security.istio.io v1 and v1beta1 share one schema, so both decode into the v1 types.
var decoders = map[string]func() metav1.Object{
	"security.istio.io/RequestAuthentication": func() metav1.Object { return &securityv1.RequestAuthentication{} },
	"security.istio.io/AuthorizationPolicy":   func() metav1.Object { return &securityv1.AuthorizationPolicy{} },
	"security.istio.io/PeerAuthentication":    func() metav1.Object { return &securityv1.PeerAuthentication{} },
	"meshguard.io/" + v1alpha1.Kind:           func() metav1.Object { return &v1alpha1.MeshGuardrail{} },
	"/Pod":                                    func() metav1.Object { return &corev1.Pod{} },
}

// decode reads a request's object; Pods become workloads, as the engine sees them.
func decode(group, kind string, raw runtime.RawExtension) (metav1.Object, error) {
	if len(raw.Raw) == 0 {
		return nil, nil
	}
	newObject, ok := decoders[group+"/"+kind]
	if !ok {
		return nil, fmt.Errorf("meshguard does not judge %s.%s", kind, group)
	}
	o := newObject()
	if err := json.Unmarshal(raw.Raw, o); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", kind, err)
	}
	if pod, ok := o.(*corev1.Pod); ok {
		return workloadOf(pod), nil
	}
	return o, nil
}

// workloadOf keeps what the engine reads of a Pod.
func workloadOf(pod *corev1.Pod) *policy.Workload {
	return &policy.Workload{ObjectMeta: pod.ObjectMeta, Kind: policy.KindPod, HostNetwork: pod.Spec.HostNetwork}
}
