package webhook

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"google.golang.org/protobuf/proto"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
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

func unmarshal(b []byte, into any) error { return json.Unmarshal(b, into, jsonOptions) }

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
		return o, unmarshal(b, o)
	},
	"/Pod": func(b []byte) (metav1.Object, error) {
		// Of a Pod's spec the engine reads hostNetwork only, and only Pods on the host's
		// network carry it (the API server omits false): a spec without it is skipped.
		var meta objectMeta
		var spec struct {
			HostNetwork bool `json:"hostNetwork"`
		}
		err := readMetadataAndSpec(b, &meta,
			func(dec *jsontext.Decoder) error { return json.UnmarshalDecode(dec, &spec) },
			func(rest []byte) bool { return bytes.Contains(rest, []byte(`"hostNetwork"`)) })
		kept := meta.objectMeta()
		return &policy.Workload{ObjectMeta: &kept, Kind: policy.KindPod, HostNetwork: spec.HostNetwork}, err
	},
}

// objectMeta is the metadata the engine and the webhook read of an object under review.
// Managed fields, owner references and finalizers are skipped. Labels and annotations are
// read whole: a patch must know whether a Pod has any.
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

// decodeIstio decodes an Istio object: its metadata, and its spec as proto JSON
// (istioSpecOptions). Unknown members of the spec are left alone: the API server has
// already pruned the object to its CRD's schema.
func decodeIstio(b []byte, meta *metav1.ObjectMeta, spec proto.Message) error {
	var m objectMeta
	err := readMetadataAndSpec(b, &m,
		func(dec *jsontext.Decoder) error { return json.UnmarshalDecode(dec, spec, istioSpecOptions) },
		func([]byte) bool { return true })
	*meta = m.objectMeta()
	return err
}

// readMetadataAndSpec reads an object's metadata into meta and its spec with readSpec. It
// stops once it has both, or once it has the metadata and specMatters, given what is left
// of the object, says the spec does not matter.
func readMetadataAndSpec(b []byte, meta *objectMeta, readSpec func(*jsontext.Decoder) error, specMatters func(rest []byte) bool) error {
	var haveMeta, haveSpec bool
	return readMembers(b, func(name []byte, dec *jsontext.Decoder) (bool, error) {
		var err error
		switch string(name) {
		case `"metadata"`:
			err, haveMeta = json.UnmarshalDecode(dec, meta), true
		case `"spec"`:
			err, haveSpec = readSpec(dec), true
		default:
			err = dec.SkipValue()
		}
		return haveMeta && (haveSpec || !specMatters(b[dec.InputOffset():])), err
	})
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

// storedObject returns the cached object of a group/kind by namespace and name, or nil.
type storedObject func(groupKind, namespace, name string) metav1.Object

// decodeOld reads the old object of an UPDATE or DELETE. That is nearly always the object
// the cache holds, at the same resourceVersion: then the cached one is taken, already
// decoded, and only the old object's metadata is read.
func decodeOld(group, kind string, raw runtime.RawExtension, stored storedObject) (metav1.Object, error) {
	if len(raw.Raw) > 0 && stored != nil {
		var head struct {
			Name            string `json:"name"`
			Namespace       string `json:"namespace"`
			ResourceVersion string `json:"resourceVersion"`
		}
		err := readMembers(raw.Raw, func(name []byte, dec *jsontext.Decoder) (bool, error) {
			if string(name) != `"metadata"` {
				return false, dec.SkipValue()
			}
			return true, json.UnmarshalDecode(dec, &head)
		})
		if err == nil && head.ResourceVersion != "" {
			if o := stored(group+"/"+kind, head.Namespace, head.Name); o != nil && o.GetResourceVersion() == head.ResourceVersion {
				return o, nil
			}
		}
	}
	return decode(group, kind, raw)
}
