package kinds

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/meshguard/meshguard/api/v1alpha1"
	"github.com/meshguard/meshguard/policy"
)

// TestDecodeAgreesWithAPITypes: the one-pass decoders read every object of the rule
// fixtures, the seeds and the recorded load-test reviews (API-server-shaped, with managed
// fields) exactly as the API types do with encoding/json, in all that the engine reads.
func TestDecodeAgreesWithAPITypes(t *testing.T) {
	objects := map[string][]byte{}
	for _, pattern := range []string{"../policy/testdata/*.yaml", "../examples/seeds/*/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			for i, doc := range yamlDocuments(t, data) {
				js, err := yaml.YAMLToJSON(doc)
				if err != nil {
					t.Fatalf("%s: %v", file, err)
				}
				objects[fmt.Sprintf("%s#%d", file, i)] = js
			}
		}
	}
	reviews, _ := filepath.Glob("../test/bench/reviews/*.json")
	for _, file := range reviews {
		var recorded struct {
			Review admissionv1.AdmissionReview `json:"review"`
		}
		readJSON(t, file, &recorded)
		objects[file+"#object"] = recorded.Review.Request.Object.Raw
		objects[file+"#oldObject"] = recorded.Review.Request.OldObject.Raw
	}
	compared := map[string]int{}
	for name, raw := range objects {
		var tm metav1.TypeMeta
		if len(raw) == 0 || json.Unmarshal(raw, &tm) != nil {
			continue
		}
		gvk := tm.GroupVersionKind()
		want, ok := referenceDecode(t, gvk.Group, gvk.Kind, raw)
		if !ok {
			continue
		}
		got, err := Lookup(gvk.Group, gvk.Kind).Decode(raw, Admission)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !sameObject(got, want) {
			t.Errorf("%s: decoded\n%#v\nwant\n%#v", name, got, want)
		}
		compared[gvk.Kind]++
	}
	for _, kind := range []string{"RequestAuthentication", "AuthorizationPolicy", "PeerAuthentication", "Pod", v1alpha1.Kind} {
		if compared[kind] == 0 {
			t.Errorf("no %s was compared", kind)
		}
	}
	t.Logf("compared %v", compared)
}

// referenceDecode decodes with encoding/json into the API types (Istio specs through
// their own UnmarshalJSON), keeping of the metadata what the webhook reads.
func referenceDecode(t *testing.T, group, kind string, raw []byte) (metav1.Object, bool) {
	var o metav1.Object
	switch group + "/" + kind {
	case "security.istio.io/RequestAuthentication":
		o = &securityv1.RequestAuthentication{}
	case "security.istio.io/AuthorizationPolicy":
		o = &securityv1.AuthorizationPolicy{}
	case "security.istio.io/PeerAuthentication":
		o = &securityv1.PeerAuthentication{}
	case "meshguard.io/" + v1alpha1.Kind:
		o = &v1alpha1.MeshGuardrail{}
	case "/Pod":
		var pod corev1.Pod
		if json.Unmarshal(raw, &pod) != nil {
			return nil, false
		}
		kept := keptMeta(pod.ObjectMeta)
		proxy := policy.ProxyAbsent
		if slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool { return policy.IsProxyContainer(c.Name, c.Image) }) {
			proxy = policy.ProxyPresent
		}
		return &policy.Workload{ObjectMeta: &kept, Kind: policy.KindPod, HostNetwork: pod.Spec.HostNetwork, ProxyContainer: proxy}, true
	default:
		return nil, false
	}
	// Fixtures with fields outside the schema fail here: the API server prunes those.
	if json.Unmarshal(raw, o) != nil {
		return nil, false
	}
	if g, ok := o.(*v1alpha1.MeshGuardrail); ok {
		return g, true
	}
	meta := o.(interface{ GetObjectMeta() metav1.Object }).GetObjectMeta().(*metav1.ObjectMeta)
	*meta = keptMeta(*meta)
	return o, true
}

// keptMeta is the metadata less what the decoders skip.
func keptMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	m.ManagedFields, m.OwnerReferences, m.Finalizers = nil, nil, nil
	return m
}

func sameObject(got, want metav1.Object) bool {
	switch w := want.(type) {
	case *securityv1.RequestAuthentication:
		g := got.(*securityv1.RequestAuthentication)
		return reflect.DeepEqual(&g.ObjectMeta, &w.ObjectMeta) && proto.Equal(&g.Spec, &w.Spec)
	case *securityv1.AuthorizationPolicy:
		g := got.(*securityv1.AuthorizationPolicy)
		return reflect.DeepEqual(&g.ObjectMeta, &w.ObjectMeta) && proto.Equal(&g.Spec, &w.Spec)
	case *securityv1.PeerAuthentication:
		g := got.(*securityv1.PeerAuthentication)
		return reflect.DeepEqual(&g.ObjectMeta, &w.ObjectMeta) && proto.Equal(&g.Spec, &w.Spec)
	}
	return reflect.DeepEqual(got, want)
}

// yamlDocuments splits a YAML stream into its documents, leaving out empty ones.
func yamlDocuments(t *testing.T, data []byte) [][]byte {
	t.Helper()
	var docs [][]byte
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) > 0 {
			docs = append(docs, doc)
		}
	}
}

func readJSON(t testing.TB, file string, into any) {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// BenchmarkDecode reads the objects of the recorded load-test reviews: the API server's
// shape, with managed fields, Pods at 6 KB.
func BenchmarkDecode(b *testing.B) {
	files, _ := filepath.Glob("../test/bench/reviews/*.json")
	for _, file := range files {
		var recorded struct {
			Review admissionv1.AdmissionReview `json:"review"`
		}
		readJSON(b, file, &recorded)
		req := recorded.Review.Request
		for _, o := range []struct {
			name string
			raw  runtime.RawExtension
		}{{"object", req.Object}, {"oldObject", req.OldObject}} {
			if len(o.raw.Raw) == 0 {
				continue
			}
			b.Run(strings.TrimSuffix(filepath.Base(file), ".json")+"/"+o.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Lookup(req.Kind.Group, req.Kind.Kind).Decode(o.raw.Raw, Admission); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
