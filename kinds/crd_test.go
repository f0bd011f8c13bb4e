package kinds

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"sigs.k8s.io/yaml"
)

// crd is what TestIstioCRDsAgree reads of a CustomResourceDefinition.
type crd struct {
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind   string `json:"kind"`
			Plural string `json:"plural"`
		} `json:"names"`
		Scope    string `json:"scope"`
		Versions []struct {
			Name   string `json:"name"`
			Served bool   `json:"served"`
			Schema struct {
				OpenAPIV3Schema schemaNode `json:"openAPIV3Schema"`
			} `json:"schema"`
		} `json:"versions"`
	} `json:"spec"`
}

type schemaNode struct {
	Properties           map[string]schemaNode `json:"properties"`
	Items                *schemaNode           `json:"items"`
	AdditionalProperties *schemaNode           `json:"additionalProperties"`
}

// TestIstioCRDsAgree: the CRDs Istio ships (istio.io/api, the module meshguard builds
// against) serve the versions, resource and scope of the table's rows, and their schemas
// name exactly the fields the spec decoder takes, by the same names (JSON names, and the
// CRDs' alternative names, altNames): the field-name semantics of checkSpecNames is the
// CRD's.
func TestIstioCRDsAgree(t *testing.T) {
	crds := istioCRDs(t)
	checked := 0
	for _, k := range All() {
		if !strings.HasSuffix(k.Group, ".istio.io") {
			continue
		}
		c, ok := crds[k.Kind]
		if !ok {
			t.Errorf("%s: no CRD in istio.io/api", k)
			continue
		}
		var served []string
		for _, v := range c.Spec.Versions {
			if v.Served {
				served = append(served, v.Name)
			}
		}
		if !sameSet(served, k.Versions) || c.Spec.Names.Plural != k.Resource || (c.Spec.Scope == "Cluster") != k.ClusterScoped {
			t.Errorf("%s: the CRD serves %v as %s (%s); the table says %v as %s (cluster-scoped %v)", k, served, c.Spec.Names.Plural, c.Spec.Scope, k.Versions, k.Resource, k.ClusterScoped)
		}
		spec := istioRowSpec(t, k)
		for _, v := range c.Spec.Versions {
			compareSchema(t, k.Kind+"/"+v.Name+": spec", v.Schema.OpenAPIV3Schema.Properties["spec"], spec.ProtoReflect().Descriptor())
		}
		checked++
	}
	if checked != 4 {
		t.Errorf("compared %d Istio kinds with their CRDs, want 4", checked)
	}
}

// istioRowSpec decodes an empty object of an Istio row, to reach its spec message.
func istioRowSpec(t *testing.T, k *Kind) proto.Message {
	t.Helper()
	o, err := k.decode([]byte(`{"metadata":{"name":"x"},"spec":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	return reflect.ValueOf(o).Elem().FieldByName("Spec").Addr().Interface().(proto.Message)
}

func compareSchema(t *testing.T, path string, node schemaNode, md protoreflect.MessageDescriptor) {
	t.Helper()
	if md.ParentFile().Package() == "google.protobuf" {
		return
	}
	fields := md.Fields()
	names := []string{}
	for i := range fields.Len() {
		fd := fields.Get(i)
		names = append(names, fd.JSONName())
		if alt, ok := altNames[fd.FullName()]; ok {
			names = append(names, alt)
		}
		sub, ok := node.Properties[fd.JSONName()]
		if !ok {
			continue
		}
		switch {
		case fd.IsMap() && fd.MapValue().Message() != nil && sub.AdditionalProperties != nil:
			compareSchema(t, path+"."+fd.JSONName()+"[*]", *sub.AdditionalProperties, fd.MapValue().Message())
		case fd.IsList() && fd.Message() != nil && sub.Items != nil:
			compareSchema(t, path+"."+fd.JSONName()+"[*]", *sub.Items, fd.Message())
		case !fd.IsMap() && !fd.IsList() && fd.Message() != nil:
			compareSchema(t, path+"."+fd.JSONName(), sub, fd.Message())
		}
	}
	var properties []string
	for name := range node.Properties {
		properties = append(properties, name)
	}
	if !sameSet(names, properties) {
		slices.Sort(names)
		slices.Sort(properties)
		t.Errorf("%s: the CRD names %v, the decoder takes %v", path, properties, names)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// istioCRDs reads the CRDs of the istio.io/api module meshguard builds against, by kind.
func istioCRDs(t *testing.T) map[string]crd {
	t.Helper()
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api").Output()
	if err != nil {
		t.Fatalf("finding the istio.io/api module: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(dir)), "kubernetes", "customresourcedefinitions.gen.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	crds := map[string]crd{}
	for _, doc := range yamlDocuments(t, data) {
		var c crd
		if err := yaml.Unmarshal(doc, &c); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(c.Spec.Group, ".istio.io") {
			crds[c.Spec.Names.Kind] = c
		}
	}
	return crds
}
