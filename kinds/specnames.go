package kinds

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	"google.golang.org/protobuf/reflect/protoreflect"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// altNames are the names a field goes by in Istio's CRD schemas beside its JSON name
// (`+kubebuilder:altName` in istio.io/api), which istiod reads as the field.
// TestIstioCRDsAgree holds this list to the CRDs.
var altNames = map[protoreflect.FullName]string{
	"istio.security.v1beta1.JWTRule.jwks_uri": "jwks_uri",
}

// fieldNamed returns the field of md the CRD schema knows by name, or nil.
func fieldNamed(md protoreflect.MessageDescriptor, name string) protoreflect.FieldDescriptor {
	if fd := md.Fields().ByJSONName(name); fd != nil {
		return fd
	}
	if fd := md.Fields().ByName(protoreflect.Name(name)); fd != nil && altNames[fd.FullName()] == name {
		return fd
	}
	return nil
}

// checkSpecNames reports every member of an Istio spec, at any depth, that is not a field
// of its message by the field's JSON name: what the CRD schema knows it by. Values are not
// checked here; the decoder reads them after.
func checkSpecNames(spec jsontext.Value, md protoreflect.MessageDescriptor, path *field.Path) error {
	c := specChecker{dec: jsontext.NewDecoder(bytes.NewReader(spec), jsonOptions)}
	if err := c.message(md, path); err != nil {
		return err
	}
	if len(c.unknown) == 0 {
		return nil
	}
	msgs := make([]string, len(c.unknown))
	for i, err := range c.unknown {
		msgs[i] = err.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}

// specChecker walks a spec with its message descriptors, gathering the unknown members.
type specChecker struct {
	dec     *jsontext.Decoder
	unknown []error
}

func (c *specChecker) message(md protoreflect.MessageDescriptor, path *field.Path) error {
	dec := c.dec
	// Well-known types (google.protobuf.Duration, a string in JSON) have no members.
	if dec.PeekKind() != '{' || md.ParentFile().Package() == "google.protobuf" {
		return dec.SkipValue()
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		name := tok.String()
		fd := fieldNamed(md, name)
		if fd == nil {
			c.unknown = append(c.unknown, unknownField(md, path.Child(name), name))
			if err := dec.SkipValue(); err != nil {
				return err
			}
			continue
		}
		if err := c.field(fd, path.Child(name)); err != nil {
			return err
		}
	}
	_, err := dec.ReadToken()
	return err
}

func (c *specChecker) field(fd protoreflect.FieldDescriptor, path *field.Path) error {
	dec := c.dec
	switch {
	case fd.IsMap():
		if fd.MapValue().Message() == nil || dec.PeekKind() != '{' {
			return dec.SkipValue()
		}
		if _, err := dec.ReadToken(); err != nil {
			return err
		}
		for dec.PeekKind() != '}' {
			key, err := dec.ReadToken()
			if err != nil {
				return err
			}
			if err := c.message(fd.MapValue().Message(), path.Key(key.String())); err != nil {
				return err
			}
		}
		_, err := dec.ReadToken()
		return err
	case fd.Message() == nil:
		return dec.SkipValue()
	case fd.IsList():
		if dec.PeekKind() != '[' {
			return dec.SkipValue()
		}
		if _, err := dec.ReadToken(); err != nil {
			return err
		}
		for i := 0; dec.PeekKind() != ']'; i++ {
			if err := c.message(fd.Message(), path.Index(i)); err != nil {
				return err
			}
		}
		_, err := dec.ReadToken()
		return err
	}
	return c.message(fd.Message(), path)
}

// unknownField names the unknown field and, where a field of md goes by that proto name
// or differs only in case, the name to write instead.
func unknownField(md protoreflect.MessageDescriptor, path *field.Path, name string) error {
	err := fmt.Errorf("unknown field %q", path.String())
	if fd := md.Fields().ByName(protoreflect.Name(name)); fd != nil {
		return fmt.Errorf("%w: Istio's schema spells it %q", err, fd.JSONName())
	}
	fields := md.Fields()
	for i := range fields.Len() {
		if strings.EqualFold(fields.Get(i).JSONName(), name) {
			return fmt.Errorf("%w: Istio's schema spells it %q", err, fields.Get(i).JSONName())
		}
	}
	return err
}
