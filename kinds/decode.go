package kinds

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshguard/meshguard/api/v1alpha1"
	"github.com/meshguard/meshguard/policy"
)

// Objects are read in one pass with the JSON v2 decoder: it validates as it goes, where
// encoding/json scans a document once to validate it and again to decode it, and it skips
// what is not asked for (a Pod's spec, managed fields) without building it. The API server
// sends objects as it encodes them: valid UTF-8, names in their case, and no duplicate
// names, so they are not tracked (were there any, the last would win, as in encoding/json).
var jsonOptions = jsontext.AllowDuplicateNames(true)

// strictOptions read a whole API type as kubectl's strict field validation does,
// case-sensitively: an unknown, misspelt or duplicated member is an error.
var strictOptions = json.RejectUnknownMembers(true)

// strictDecode decodes a manifest into its API type (strictOptions).
func strictDecode(data []byte, into any) error {
	return jsonError(json.Unmarshal(data, into, strictOptions))
}

// istioManifest is an Istio object as a manifest may hold it: its spec is checked against
// the protobuf schema, by its Kubernetes JSON names (checkSpecNames), not as a Go type.
func istioManifest() any {
	return &struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
		Spec              jsontext.Value `json:"spec"`
		Status            jsontext.Value `json:"status"`
	}{}
}

// readMembers reads the JSON object in b member by member: read is called with each
// top-level member's name and the decoder at its value, which it must read or skip, and
// reports when it has all it needs. The rest is not read: an object under review was
// parsed whole, and found valid, with the AdmissionReview around it, and a Pod's spec and
// managed fields are most of its bytes. Names are matched as the API server writes them,
// unescaped.
func readMembers(b []byte, read func(name []byte, dec *jsontext.Decoder) (done bool, err error)) error {
	dec := memberDecoders.Get().(*jsontext.Decoder)
	defer memberDecoders.Put(dec)
	dec.Reset(bytes.NewBuffer(b), jsonOptions)
	defer dec.Reset(emptyJSON, jsonOptions) // the pool keeps no request's bytes
	if tok, err := dec.ReadToken(); err != nil {
		return err
	} else if tok.Kind() != '{' {
		return fmt.Errorf("want a JSON object, found %v", tok.Kind())
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadValue()
		if err != nil {
			return err
		}
		done, err := read(name, dec)
		if err != nil || done {
			return err
		}
	}
	_, err := dec.ReadToken()
	return err
}

var memberDecoders = sync.Pool{New: func() any { return jsontext.NewDecoder(emptyJSON) }}

// emptyJSON is what a pooled decoder reads between uses: nothing, and it holds no state.
var emptyJSON io.Reader = noBytes{}

type noBytes struct{}

func (noBytes) Read([]byte) (int, error) { return 0, io.EOF }

// Identity reads an object's namespace, name and resourceVersion, and nothing else.
func Identity(b []byte) (namespace, name, resourceVersion string, err error) {
	var head struct {
		Name            string `json:"name"`
		Namespace       string `json:"namespace"`
		ResourceVersion string `json:"resourceVersion"`
	}
	err = readMembers(b, func(name []byte, dec *jsontext.Decoder) (bool, error) {
		if string(name) != `"metadata"` {
			return false, dec.SkipValue()
		}
		return true, json.UnmarshalDecode(dec, &head)
	})
	return head.Namespace, head.Name, head.ResourceVersion, err
}

// objectMeta is the metadata the engine and the webhook read of an object. Managed fields,
// owner references and finalizers are skipped. Labels and annotations are read whole: a
// patch must know whether a Pod has any.
type objectMeta struct {
	Name              string            `json:"name"`
	GenerateName      string            `json:"generateName"`
	Namespace         string            `json:"namespace"`
	UID               types.UID         `json:"uid"`
	ResourceVersion   string            `json:"resourceVersion"`
	Generation        int64             `json:"generation"`
	CreationTimestamp time.Time         `json:"creationTimestamp"` // RFC 3339, as metav1.Time
	DeletionTimestamp *time.Time        `json:"deletionTimestamp"`
	Labels            map[string]string `json:"labels"`
	Annotations       map[string]string `json:"annotations"`
}

func (m objectMeta) objectMeta() metav1.ObjectMeta {
	meta := metav1.ObjectMeta{
		Name: m.Name, GenerateName: m.GenerateName, Namespace: m.Namespace, UID: m.UID,
		ResourceVersion: m.ResourceVersion, Generation: m.Generation,
		Labels: m.Labels, Annotations: m.Annotations,
	}
	// In local time, as metav1.Time decodes them.
	if !m.CreationTimestamp.IsZero() {
		meta.CreationTimestamp = metav1.NewTime(m.CreationTimestamp.Local())
	}
	if m.DeletionTimestamp != nil {
		t := metav1.NewTime(m.DeletionTimestamp.Local())
		meta.DeletionTimestamp = &t
	}
	return meta
}

// readMetadataAndSpec reads an object's metadata into meta and its spec with readSpec. It
// stops once it has both, or once it has the metadata and specMatters, given what is left
// of the object, says the spec does not matter. A top-level member no object has is an
// error (names are matched as the API server writes them, unescaped).
func readMetadataAndSpec(b []byte, meta *objectMeta, readSpec func(*jsontext.Decoder) error, specMatters func(rest []byte) bool) error {
	var haveMeta, haveSpec bool
	return readMembers(b, func(name []byte, dec *jsontext.Decoder) (bool, error) {
		var err error
		switch string(name) {
		case `"metadata"`:
			err, haveMeta = json.UnmarshalDecode(dec, meta), true
			err = jsonError(err)
		case `"spec"`:
			err, haveSpec = readSpec(dec), true
		case `"apiVersion"`, `"kind"`, `"status"`:
			err = dec.SkipValue()
		default:
			return false, fmt.Errorf("unknown field %s", name)
		}
		return haveMeta && (haveSpec || !specMatters(b[dec.InputOffset():])), err
	})
}

// istio decodes an Istio policy: its metadata, and its spec as proto JSON
// (istioSpecOptions) once every member of it is found to be a field the schema names by
// that name (checkSpecNames). protojson would also take a field's proto name
// (not_request_principals), which the CRD schema does not know: the API server would drop
// or refuse it, and the cluster would run another policy than the one judged.
func istio(newObject func() (metav1.Object, *metav1.ObjectMeta, any)) func([]byte) (metav1.Object, error) {
	return func(b []byte) (metav1.Object, error) {
		o, meta, spec := newObject()
		md := spec.(proto.Message).ProtoReflect().Descriptor()
		var m objectMeta
		err := readMetadataAndSpec(b, &m,
			func(dec *jsontext.Decoder) error {
				v, err := dec.ReadValue()
				if err != nil {
					return err
				}
				if err := checkSpecNames(v, md, "spec"); err != nil {
					return err
				}
				return specError(json.Unmarshal(v, spec, istioSpecOptions))
			},
			func([]byte) bool { return true })
		*meta = m.objectMeta()
		return o, err
	}
}

// guardrail decodes a MeshGuardrail whole, rejecting members its schema does not have.
func guardrail(b []byte) (metav1.Object, error) {
	o := &v1alpha1.MeshGuardrail{}
	return o, jsonError(json.Unmarshal(b, o, strictOptions))
}

// podSpec is what the engine reads of a Pod's spec.
type podSpec struct {
	HostNetwork bool `json:"hostNetwork"`
	Containers  []struct {
		Name  string `json:"name"`
		Image string `json:"image"`
	} `json:"containers"`
}

// proxyContainer tells whether the spec runs Istio's proxy container.
func (s podSpec) proxyContainer() policy.ProxyContainer {
	for _, c := range s.Containers {
		if policy.IsProxyContainer(c.Name, c.Image) {
			return policy.ProxyPresent
		}
	}
	return policy.ProxyAbsent
}

// pod reads a Pod as the workload policies select. Of its spec the engine reads
// hostNetwork, which only Pods on the host's network carry (the API server omits false),
// and whether a container is Istio's proxy: a spec that names neither is skipped.
func pod(b []byte) (metav1.Object, error) {
	var meta objectMeta
	var spec podSpec
	proxy := policy.ProxyAbsent
	err := readMetadataAndSpec(b, &meta,
		func(dec *jsontext.Decoder) error {
			err := jsonError(json.UnmarshalDecode(dec, &spec))
			proxy = spec.proxyContainer()
			return err
		},
		func(rest []byte) bool {
			return bytes.Contains(rest, []byte(`"hostNetwork"`)) || bytes.Contains(rest, []byte(`"`+policy.ProxyContainerName+`"`))
		})
	kept := meta.objectMeta()
	return &policy.Workload{ObjectMeta: &kept, Kind: policy.KindPod, HostNetwork: spec.HostNetwork, ProxyContainer: proxy}, err
}

// kube decodes an object of a Kubernetes API type.
func kube[T any, PT interface {
	*T
	metav1.Object
}](b []byte) (metav1.Object, error) {
	var o PT = new(T)
	return o, jsonError(json.Unmarshal(b, o, jsonOptions))
}

// template is what meshguard reads of a pod template.
type template struct {
	Metadata objectMeta `json:"metadata"`
	Spec     podSpec    `json:"spec"`
}

// controllerManifest covers every controller with a pod template.
type controllerManifest struct {
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		Template    *template `json:"template"` // Deployment, StatefulSet, DaemonSet, ReplicaSet, Job
		JobTemplate *struct { // CronJob
			Spec struct {
				Template *template `json:"template"`
			} `json:"spec"`
		} `json:"jobTemplate"`
	} `json:"spec"`
}

// podTemplate reads a controller's pod template as the workloads policies will select.
func podTemplate(kind string) func([]byte) (metav1.Object, error) {
	return func(b []byte) (metav1.Object, error) {
		var m controllerManifest
		if err := json.Unmarshal(b, &m, jsonOptions); err != nil {
			return nil, jsonError(err)
		}
		tpl := m.Spec.Template
		if tpl == nil && m.Spec.JobTemplate != nil {
			tpl = m.Spec.JobTemplate.Spec.Template
		}
		if tpl == nil {
			return nil, fmt.Errorf("%q has no pod template", m.Metadata.Name)
		}
		return &policy.Workload{Kind: kind, HostNetwork: tpl.Spec.HostNetwork, ProxyContainer: tpl.Spec.proxyContainer(), ObjectMeta: &metav1.ObjectMeta{
			Name: m.Metadata.Name, Namespace: m.Metadata.Namespace, Labels: tpl.Metadata.Labels, Annotations: tpl.Metadata.Annotations,
		}}, nil
	}
}

// jsonError names the field of a JSON v2 error by its Kubernetes path (spec.rules[0]),
// in the words of kubectl's strict field validation for unknown fields.
func jsonError(err error) error {
	if err == nil {
		return nil
	}
	var se *json.SemanticError
	if !errors.As(err, &se) {
		return err
	}
	path := fieldPath(se.JSONPointer)
	switch {
	case se.Err == json.ErrUnknownName:
		return fmt.Errorf("unknown field %q", path)
	case se.JSONKind != 0 && se.GoType != nil:
		return fmt.Errorf("%s: expected %s, got %s", path, Expected(se.GoType.Kind()), se.JSONKind)
	case se.Err != nil:
		return fmt.Errorf("%s: %v", path, se.Err)
	}
	return err
}

// specError is jsonError for an error met within a spec, whose path starts there.
func specError(err error) error {
	if err == nil {
		return nil
	}
	var se *json.SemanticError
	if errors.As(err, &se) {
		se.JSONPointer = "/spec" + se.JSONPointer
	}
	return jsonError(err)
}

// fieldPath turns a JSON pointer (/spec/rules/0) into a field path (spec.rules[0]).
func fieldPath(p jsontext.Pointer) string {
	var b strings.Builder
	for token := range p.Tokens() {
		if _, err := strconv.Atoi(token); err == nil && b.Len() > 0 {
			b.WriteString("[" + token + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(token)
	}
	return b.String()
}

// Expected names what JSON a Go kind is read from, for messages: "an object", "a list".
func Expected(k reflect.Kind) string {
	switch k {
	case reflect.Map, reflect.Struct, reflect.Pointer:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	}
	return "a number"
}
