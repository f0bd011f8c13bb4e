package check

import (
	"testing"

	yamlv3 "go.yaml.in/yaml/v3"
)

// TestFieldLine: a finding's field is found at its key or list entry, and a field the
// object lacks at the nearest enclosing one it has.
func TestFieldLine(t *testing.T) {
	const doc = `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: web-jwt
  labels:
    app: web
    meshguard.io/covered: "true"
spec:
  selector:
    matchLabels: {app: web}
  jwtRules:
  - issuer: https://idp.example.com
  - issuer: https://other.example.com
    audiences:
    - web
`
	var tree yamlv3.Node
	if err := yamlv3.Unmarshal([]byte(doc), &tree); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		field string
		line  int
	}{
		{"spec.jwtRules[0].audiences", 12}, // missing: its entry
		{"spec.jwtRules[1].audiences", 14},
		{"spec.jwtRules[1].audiences[0]", 15},
		{"spec.jwtRules[2].issuer", 11}, // no such entry: the list
		{"spec.selector.matchLabels", 10},
		{"metadata.labels[meshguard.io/covered]", 7},
		{"spec.targetRefs[0]", 8},
		{"spec", 8},
		{"", 1},
	} {
		if got := fieldLine(tree.Content[0], c.field); got != c.line {
			t.Errorf("%q: line %d, want %d", c.field, got, c.line)
		}
	}
}
