package webhook

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshguard/meshguard/api/v1alpha1"
	"github.com/meshguard/meshguard/policy"
)

// decoders turn the raw object of a request, by group/kind, into what the engine judges.
// security.istio.io v1 and v1beta1 share one schema, so both decode into the v1 types.
var decoders = map[string]func([]byte) (metav1.Object, error){
	"security.istio.io/RequestAuthentication": func(b []byte) (metav1.Object, error) {
		o := &securityv1.RequestAuthentication{}
		return o, decodeIstio(b, &o.ObjectMeta, &o.Spec)
	},
	"security.istio.io/AuthorizationPolicy": func(b []byte) (metav1.Object, error) {
		o := &securityv1.AuthorizationPolicy{}
		return o, decodeIstio(b, &o.ObjectMeta, &o.Spec)
	},
	"security.istio.io/PeerAuthentication": func(b []byte) (metav1.Object, error) {
		o := &securityv1.PeerAuthentication{}
		return o, decodeIstio(b, &o.ObjectMeta, &o.Spec)
	},
	"meshguard.io/" + v1alpha1.Kind: func(b []byte) (metav1.Object, error) {
		o := &v1alpha1.MeshGuardrail{}
		return o, json.Unmarshal(b, o)
	},
	"/Pod": func(b []byte) (metav1.Object, error) {
		// Of a Pod's spec the engine reads hostNetwork only; the rest is skipped, not built.
		var pod struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
			Spec     struct {
				HostNetwork bool `json:"hostNetwork"`
			} `json:"spec"`
		}
		err := json.Unmarshal(b, &pod)
		return &policy.Workload{ObjectMeta: pod.Metadata, Kind: policy.KindPod, HostNetwork: pod.Spec.HostNetwork}, err
	},
}

// istioSpecJSON reads the spec of an Istio object as Istio does. Unknown fields are left
// alone: the API server has already pruned the object to its CRD's schema.
var istioSpecJSON = protojson.UnmarshalOptions{DiscardUnknown: true}

// decodeIstio decodes the metadata with encoding/json and the spec with protojson, which
// is several times faster than the jsonpb behind the Istio types' own UnmarshalJSON.
func decodeIstio(b []byte, meta *metav1.ObjectMeta, spec proto.Message) error {
	var parts struct {
		Metadata *metav1.ObjectMeta `json:"metadata"`
		Spec     json.RawMessage    `json:"spec"`
	}
	parts.Metadata = meta
	if err := json.Unmarshal(b, &parts); err != nil {
		return err
	}
	if len(parts.Spec) == 0 || string(parts.Spec) == "null" {
		return nil
	}
	return istioSpecJSON.Unmarshal(parts.Spec, spec)
}

// decode reads a request's object; Pods become workloads, as the engine sees them.
func decode(group, kind string, raw runtime.RawExtension) (metav1.Object, error) {
	if len(raw.Raw) == 0 {
		return nil, nil
	}
	decodeKind, ok := decoders[group+"/"+kind]
	if !ok {
		return nil, fmt.Errorf("meshguard does not judge %s.%s", kind, group)
	}
	o, err := decodeKind(raw.Raw)
	if err != nil {
		return nil, fmt.Errorf("decoding %s: %w", kind, err)
	}
	return o, nil
}
