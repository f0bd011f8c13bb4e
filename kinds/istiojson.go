package kinds

import (
	"fmt"
	"reflect"
	"strconv"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

// The specs of Istio's security policies are read with the JSON v2 decoder straight into
// their Go types. protojson reads them through protobuf reflection, and was a third of
// meshguard's own work on a policy review; the Istio types' own UnmarshalJSON (jsonpb) is
// slower still.
//
// Proto JSON differs from Go's JSON in these ways, each handled here:
//   - member names are the lowerCamelCase JSON names, where the Go fields are tagged with
//     the proto names (jwks_uri): names are matched case-insensitively, ignoring
//     underscores, as the JSON v2 decoder does on request, once checkSpecNames has found
//     each to be a field's JSON name, spelt exactly;
//   - every message type has an UnmarshalJSON method (jsonpb), which the decoder would
//     call: each is read instead as a twin type with its fields and no methods (a type
//     with no twin is still read right, by its own method, only slower);
//   - enums are written by name: read through the enum's descriptor;
//   - google.protobuf.Duration is a string ("1.5s"), read by protojson; the one oneof, an
//     AuthorizationPolicy's provider, is read beside its message; and the one map with
//     integer keys, portLevelMtls, takes them as proto JSON does ("0080" is port 80).
//
// TestIstioSpecSchema decodes a message with every field of every spec type set and
// fails when a new field, enum, oneof or well-known type of a newer istio.io/api is not
// read.

// Twins of the spec messages: the same fields, none of the methods.
type (
	requestAuthentication securityv1beta1.RequestAuthentication
	jwtRule               securityv1beta1.JWTRule
	jwtHeader             securityv1beta1.JWTHeader
	claimToHeader         securityv1beta1.ClaimToHeader
	authorizationPolicy   securityv1beta1.AuthorizationPolicy
	extensionProvider     securityv1beta1.AuthorizationPolicy_ExtensionProvider
	rule                  securityv1beta1.Rule
	ruleFrom              securityv1beta1.Rule_From
	ruleTo                securityv1beta1.Rule_To
	source                securityv1beta1.Source
	operation             securityv1beta1.Operation
	condition             securityv1beta1.Condition
	peerAuthentication    securityv1beta1.PeerAuthentication
	mutualTLS             securityv1beta1.PeerAuthentication_MutualTLS
	workloadSelector      typev1beta1.WorkloadSelector
	targetReference       typev1beta1.PolicyTargetReference
)

// authorizationPolicyJSON is an AuthorizationPolicy as JSON has it: its oneof's member
// beside the others.
type authorizationPolicyJSON struct {
	*authorizationPolicy
	Provider *securityv1beta1.AuthorizationPolicy_ExtensionProvider `json:"provider"`
}

var istioSpecOptions = json.JoinOptions(
	jsonOptions,
	json.MatchCaseInsensitiveNames(true),
	json.WithUnmarshalers(json.JoinUnmarshalers(
		asTwin(func(m *securityv1beta1.RequestAuthentication) any { return (*requestAuthentication)(m) }),
		asTwin(func(m *securityv1beta1.JWTRule) any { return (*jwtRule)(m) }),
		asTwin(func(m *securityv1beta1.JWTHeader) any { return (*jwtHeader)(m) }),
		asTwin(func(m *securityv1beta1.ClaimToHeader) any { return (*claimToHeader)(m) }),
		json.UnmarshalFromFunc(func(dec *jsontext.Decoder, m *securityv1beta1.AuthorizationPolicy) error {
			in := authorizationPolicyJSON{authorizationPolicy: (*authorizationPolicy)(m)}
			if err := json.UnmarshalDecode(dec, &in); err != nil {
				return err
			}
			if in.Provider != nil {
				m.ActionDetail = &securityv1beta1.AuthorizationPolicy_Provider{Provider: in.Provider}
			}
			return nil
		}),
		asTwin(func(m *securityv1beta1.AuthorizationPolicy_ExtensionProvider) any { return (*extensionProvider)(m) }),
		asTwin(func(m *securityv1beta1.Rule) any { return (*rule)(m) }),
		asTwin(func(m *securityv1beta1.Rule_From) any { return (*ruleFrom)(m) }),
		asTwin(func(m *securityv1beta1.Rule_To) any { return (*ruleTo)(m) }),
		asTwin(func(m *securityv1beta1.Source) any { return (*source)(m) }),
		asTwin(func(m *securityv1beta1.Operation) any { return (*operation)(m) }),
		asTwin(func(m *securityv1beta1.Condition) any { return (*condition)(m) }),
		asTwin(func(m *securityv1beta1.PeerAuthentication) any { return (*peerAuthentication)(m) }),
		asTwin(func(m *securityv1beta1.PeerAuthentication_MutualTLS) any { return (*mutualTLS)(m) }),
		asTwin(func(m *typev1beta1.WorkloadSelector) any { return (*workloadSelector)(m) }),
		asTwin(func(m *typev1beta1.PolicyTargetReference) any { return (*targetReference)(m) }),
		json.UnmarshalFromFunc(unmarshalEnum),
		json.UnmarshalFromFunc(unmarshalPortLevelMTLS),
		json.UnmarshalFromFunc(func(dec *jsontext.Decoder, d *durationpb.Duration) error {
			v, err := dec.ReadValue()
			if err != nil || v.Kind() == 'n' {
				return err
			}
			return protojson.Unmarshal(v, d)
		}),
	)),
)

// asTwin reads a message as its twin type (see above).
func asTwin[M any](twin func(*M) any) *json.Unmarshalers {
	return json.UnmarshalFromFunc(func(dec *jsontext.Decoder, m *M) error {
		return json.UnmarshalDecode(dec, twin(m))
	})
}

// unmarshalEnum reads an enum by name, or by number, as proto JSON allows. A name this
// version of the Istio API does not know is an error: the review fails closed rather
// than judge a policy whose action it cannot tell.
func unmarshalEnum(dec *jsontext.Decoder, e protoreflect.Enum) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	var n protoreflect.EnumNumber
	switch tok.Kind() {
	case 'n':
		return nil
	case '"':
		v := e.Descriptor().Values().ByName(protoreflect.Name(tok.String()))
		if v == nil {
			return fmt.Errorf("%s has no value %q", e.Descriptor().FullName(), tok.String())
		}
		n = v.Number()
	case '0':
		i, err := strconv.ParseInt(tok.String(), 10, 32)
		if err != nil {
			return fmt.Errorf("%s: %w", e.Descriptor().FullName(), err)
		}
		n = protoreflect.EnumNumber(i)
	default:
		return fmt.Errorf("%s: want a name or a number, found %v", e.Descriptor().FullName(), tok.Kind())
	}
	// e is a pointer to the enum field (see json.UnmarshalFromFunc).
	reflect.ValueOf(e).Elem().SetInt(int64(n))
	return nil
}

// unmarshalPortLevelMTLS reads a PeerAuthentication's portLevelMtls, whose keys are ports
// written as proto JSON writes uint32 keys, leading zeros allowed.
func unmarshalPortLevelMTLS(dec *jsontext.Decoder, m *map[uint32]*securityv1beta1.PeerAuthentication_MutualTLS) error {
	tok, err := dec.ReadToken()
	if err != nil || tok.Kind() == 'n' {
		return err
	}
	if tok.Kind() != '{' {
		return fmt.Errorf("portLevelMtls: want an object, found %v", tok.Kind())
	}
	if *m == nil {
		*m = map[uint32]*securityv1beta1.PeerAuthentication_MutualTLS{}
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return err
		}
		port, err := strconv.ParseUint(name.String(), 10, 32)
		if err != nil {
			return fmt.Errorf("portLevelMtls: %q is not a port: %w", name.String(), err)
		}
		var mtls *securityv1beta1.PeerAuthentication_MutualTLS
		if err := json.UnmarshalDecode(dec, &mtls); err != nil {
			return err
		}
		(*m)[uint32(port)] = mtls
	}
	_, err = dec.ReadToken()
	return err
}
