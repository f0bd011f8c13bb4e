package kinds

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// altNames are the names a field goes by in Istio's CRD schemas beside its JSON name
// (`+kubebuilder:altName` in istio.io/api), which istiod reads as the field.
// TestIstioCRDsAgree holds this list to the CRDs.
var altNames = map[protoreflect.FullName]string{
	"istio.security.v1beta1.JWTRule.jwks_uri": "jwks_uri",
}

// schemaNames returns the fields of md by the names the CRD schema knows them by.
func schemaNames(md protoreflect.MessageDescriptor) map[string]protoreflect.FieldDescriptor {
	if names, ok := namesOf.Load(md.FullName()); ok {
		return names.(map[string]protoreflect.FieldDescriptor)
	}
	names := map[string]protoreflect.FieldDescriptor{}
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		names[fd.JSONName()] = fd
		if alt, ok := altNames[fd.FullName()]; ok {
			names[alt] = fd
		}
	}
	namesOf.Store(md.FullName(), names)
	return names
}

// namesOf keeps schemaNames per message: a spec is checked on every review of a policy.
var namesOf sync.Map

// checkSpecNames reports every member of an Istio spec, at any depth, that is not a field
// of its message by a name the CRD schema knows it by (its JSON name, or altNames). Values
// are not checked here; the decoder reads them after. root is the spec's own path.
func checkSpecNames(spec jsontext.Value, md protoreflect.MessageDescriptor, root string) error {
	dec := memberDecoders.Get().(*jsontext.Decoder)
	defer memberDecoders.Put(dec)
	dec.Reset(bytes.NewReader(spec), jsonOptions)
	defer dec.Reset(emptyJSON, jsonOptions)
	c := specChecker{dec: dec, root: root}
	if err := c.message(md); err != nil {
		return err
	}
	if len(c.problems) == 0 {
		return nil
	}
	return errors.New(strings.Join(c.problems, "; "))
}

// specChecker walks a spec with its message descriptors, gathering the unknown members
// and the nulls proto JSON does not allow.
// The path of one is the decoder's position, rendered only then.
type specChecker struct {
	dec      *jsontext.Decoder
	root     string
	problems []string
}

func (c *specChecker) message(md protoreflect.MessageDescriptor) error {
	dec := c.dec
	// Well-known types (google.protobuf.Duration, a string in JSON) have no members.
	if dec.PeekKind() != '{' || md.ParentFile().Package() == "google.protobuf" {
		return dec.SkipValue()
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	names := schemaNames(md)
	for dec.PeekKind() != '}' {
		quoted, err := dec.ReadValue()
		if err != nil {
			return err
		}
		fd, known := names[string(quoted[1:len(quoted)-1])]
		if !known && bytes.IndexByte(quoted, '\\') >= 0 {
			fd, known = names[unquote(quoted)]
		}
		if known {
			err = c.field(fd)
		} else {
			c.problems = append(c.problems, c.unknownField(md, unquote(quoted)))
			err = dec.SkipValue()
		}
		if err != nil {
			return err
		}
	}
	_, err := dec.ReadToken()
	return err
}

func (c *specChecker) field(fd protoreflect.FieldDescriptor) error {
	dec := c.dec
	var element protoreflect.MessageDescriptor
	switch {
	case fd.IsMap():
		element = fd.MapValue().Message()
	case fd.IsList():
		element = fd.Message()
	default:
		if fd.Message() == nil {
			return dec.SkipValue()
		}
		return c.message(fd.Message())
	}
	open, close := jsontext.Kind('['), jsontext.Kind(']')
	if fd.IsMap() {
		open, close = '{', '}'
	}
	if element == nil || dec.PeekKind() != open {
		return dec.SkipValue()
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	for dec.PeekKind() != close {
		if fd.IsMap() {
			if _, err := dec.ReadValue(); err != nil { // the key
				return err
			}
		}
		if dec.PeekKind() == 'n' {
			// Proto JSON takes no null in a list or a map of messages (protojson refuses it).
			if _, err := dec.ReadValue(); err != nil {
				return err
			}
			c.problems = append(c.problems, fmt.Sprintf("%q is null, where Istio's schema has a %s", fieldPath(jsontext.Pointer("/"+c.root)+dec.StackPointer()), element.Name()))
			continue
		}
		if err := c.message(element); err != nil {
			return err
		}
	}
	_, err := dec.ReadToken()
	return err
}

// unknownField names the unknown member just read and, where a field of md goes by that
// proto name or differs only in case, the name to write instead.
func (c *specChecker) unknownField(md protoreflect.MessageDescriptor, name string) string {
	msg := fmt.Sprintf("unknown field %q", fieldPath(jsontext.Pointer("/"+c.root)+c.dec.StackPointer()))
	if fd := md.Fields().ByName(protoreflect.Name(name)); fd != nil {
		return msg + fmt.Sprintf(": Istio's schema spells it %q", fd.JSONName())
	}
	fields := md.Fields()
	for i := range fields.Len() {
		if strings.EqualFold(fields.Get(i).JSONName(), name) {
			return msg + fmt.Sprintf(": Istio's schema spells it %q", fields.Get(i).JSONName())
		}
	}
	return msg
}

// unquote returns a member name unescaped.
func unquote(quoted jsontext.Value) string {
	if bytes.IndexByte(quoted, '\\') < 0 {
		return string(quoted[1 : len(quoted)-1])
	}
	name, err := strconv.Unquote(string(quoted))
	if err != nil {
		return string(quoted)
	}
	return name
}
