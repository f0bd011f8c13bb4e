package kinds

import (
	"strings"
	"testing"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	securityv1beta1 "istio.io/api/security/v1beta1"
)

// specKinds are the spec messages of the Istio security kinds meshguard reads.
func specKinds() []proto.Message {
	return []proto.Message{&securityv1beta1.RequestAuthentication{}, &securityv1beta1.AuthorizationPolicy{}, &securityv1beta1.PeerAuthentication{}}
}

// readOneofs are the oneof members istiojson.go reads; a newer Istio API adding one must
// add it there too.
var readOneofs = map[protoreflect.FullName]bool{"istio.security.v1beta1.AuthorizationPolicy.provider": true}

// TestIstioSpecSchema: a spec with every field of every message set, enums by name, maps,
// lists, durations and oneofs, written by protojson, decodes into exactly that message.
// A newer istio.io/api that adds a field, type or oneof the decoder does not read fails
// here rather than in a review.
func TestIstioSpecSchema(t *testing.T) {
	for _, kind := range specKinds() {
		full := kind.ProtoReflect().New()
		fields := populate(t, full)
		for _, names := range []protojson.MarshalOptions{{}, {UseProtoNames: true}} {
			b, err := names.Marshal(full.Interface())
			if err != nil {
				t.Fatal(err)
			}
			got := kind.ProtoReflect().New().Interface()
			if err := json.Unmarshal(b, got, istioSpecOptions); err != nil {
				t.Errorf("%s: %v\n%s", full.Descriptor().Name(), err, b)
				continue
			}
			if !proto.Equal(got, full.Interface()) {
				t.Errorf("%s: decoded\n%v\nwant\n%v\nfrom %s", full.Descriptor().Name(), got, full.Interface(), b)
			}
		}
		t.Logf("%s: %d fields set", full.Descriptor().Name(), fields)
	}
}

// populate sets every field of m, and of the messages under it, to a value other than
// its default; it returns how many fields it set.
func populate(t *testing.T, m protoreflect.Message) int {
	set := 0
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if o := fd.ContainingOneof(); o != nil && !o.IsSynthetic() && !readOneofs[fd.FullName()] {
			t.Errorf("oneof member %s is not read by the spec decoder (istiojson.go)", fd.FullName())
			continue
		}
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			for n := range 2 {
				if fd.Kind() == protoreflect.MessageKind {
					e := l.NewElement()
					set += populate(t, e.Message())
					l.Append(e)
				} else {
					l.Append(scalar(fd, n))
				}
			}
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for n := range 2 {
				k := scalar(fd.MapKey(), n).MapKey()
				if fd.MapValue().Kind() == protoreflect.MessageKind {
					v := mp.NewValue()
					set += populate(t, v.Message())
					mp.Set(k, v)
				} else {
					mp.Set(k, scalar(fd.MapValue(), n))
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			set += populate(t, m.Mutable(fd).Message())
		default:
			m.Set(fd, scalar(fd, 0))
		}
		set++
	}
	return set
}

// scalar is the n-th sample value of a field of a scalar kind: never the default.
func scalar(fd protoreflect.FieldDescriptor, n int) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(fd.JSONName() + "-" + string(rune('a'+n)))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		values := fd.Enum().Values()
		return protoreflect.ValueOfEnum(values.Get(values.Len() - 1 - n%(values.Len()-1)).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(7 + n))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(8080 + n))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(7 + n))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(7 + n))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(1.5)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(1.5)
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte{byte(n + 1)})
	}
	panic("no sample value for " + fd.Kind().String())
}

// TestIstioSpecEnums: enums are read by name or number; an unknown name is an error that
// names the enum, not a silent ALLOW.
func TestIstioSpecEnums(t *testing.T) {
	for spec, want := range map[string]securityv1beta1.AuthorizationPolicy_Action{
		`{"action":"DENY"}`: securityv1beta1.AuthorizationPolicy_DENY,
		`{"action":1}`:      securityv1beta1.AuthorizationPolicy_DENY,
		`{"action":null}`:   securityv1beta1.AuthorizationPolicy_ALLOW,
		`{}`:                securityv1beta1.AuthorizationPolicy_ALLOW,
	} {
		var ap securityv1beta1.AuthorizationPolicy
		if err := json.Unmarshal([]byte(spec), &ap, istioSpecOptions); err != nil || ap.Action != want {
			t.Errorf("%s: action %v (%v), want %v", spec, ap.Action, err, want)
		}
	}
	for _, spec := range []string{`{"action":"DENY_ALL"}`, `{"action":true}`, `{"action":4294967296}`} {
		var ap securityv1beta1.AuthorizationPolicy
		if err := json.Unmarshal([]byte(spec), &ap, istioSpecOptions); err == nil || !strings.Contains(err.Error(), "action") {
			t.Errorf("%s: want an error naming the action, got %v (action %v)", spec, err, ap.Action)
		}
	}
}

// FuzzIstioSpec: whatever protojson reads as a spec, the spec decoder reads the same, and
// the name check refuses a proto name protojson would have taken.
func FuzzIstioSpec(f *testing.F) {
	for _, kind := range specKinds() {
		full := kind.ProtoReflect().New()
		populate(&testing.T{}, full)
		b, _ := protojson.Marshal(full.Interface())
		f.Add(b)
	}
	f.Add([]byte(`{"action":"CUSTOM","provider":{"name":"opa"},"rules":[{"to":[{"operation":{"paths":["/admin"]}}]}]}`))
	f.Add([]byte(`{"jwtRules":[{"issuer":"https://idp","timeout":"1.500s","fromHeaders":[{"name":"x-jwt"}]}]}`))
	f.Add([]byte(`{"mtls":{"mode":"STRICT"},"portLevelMtls":{"8080":{"mode":"DISABLE"}}}`))
	f.Add([]byte(`{"jwt_rules":[{"issuer":"https://idp","jwks_uri":"https://idp/keys"}],"action":"DENY"}`))
	f.Fuzz(func(t *testing.T, spec []byte) {
		for _, kind := range specKinds() {
			want := kind.ProtoReflect().New().Interface()
			if protojson.Unmarshal(spec, want) != nil {
				continue
			}
			got := kind.ProtoReflect().New().Interface()
			if err := json.Unmarshal(spec, got, istioSpecOptions); err != nil {
				t.Fatalf("%T: protojson reads %s, the spec decoder fails: %v", kind, spec, err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("%T: from %s decoded\n%v\nprotojson reads\n%v", kind, spec, got, want)
			}
			// The name check takes no more than protojson does: what it admits, both read alike.
			if err := checkSpecNames(spec, kind.ProtoReflect().Descriptor(), "spec"); err == nil {
				for _, name := range protoNamesIn(spec, kind.ProtoReflect().Descriptor()) {
					t.Fatalf("%T: the name check admits the proto name %q in %s", kind, name, spec)
				}
			}
		}
	})
}

// protoNamesIn returns the members of spec, at its top level, that are a field's proto
// name and not its JSON name nor one of altNames.
func protoNamesIn(spec []byte, md protoreflect.MessageDescriptor) []string {
	var top map[string]jsontext.Value
	if json.Unmarshal(spec, &top) != nil {
		return nil
	}
	var names []string
	for name := range top {
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd != nil && fd.JSONName() != name && altNames[fd.FullName()] != name {
			names = append(names, name)
		}
	}
	return names
}
