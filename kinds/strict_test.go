package kinds

import (
	"strings"
	"testing"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"sigs.k8s.io/yaml"
)

// TestOneFieldNameSemantics: a kind's fields go by their Kubernetes JSON names only, from
// either origin where the API server would not have checked them first.
func TestOneFieldNameSemantics(t *testing.T) {
	const (
		ap = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-anonymous, namespace: shop}\n"
		ra = "apiVersion: security.istio.io/v1beta1\nkind: RequestAuthentication\nmetadata: {name: web-jwt, namespace: shop}\n"
	)
	cases := []struct {
		name, input string
		// The error each origin must give, naming the field ("": the object is read).
		manifest, admission string
	}{
		{"proto name of a field", ap + "spec:\n  action: DENY\n  rules: [{from: [{source: {not_request_principals: ['*']}}]}]\n",
			`unknown field "spec.rules[0].from[0].source.not_request_principals": Istio's schema spells it "notRequestPrincipals"`,
			`unknown field "spec.rules[0].from[0].source.not_request_principals": Istio's schema spells it "notRequestPrincipals"`},
		{"misspelt field", ra + "spec: {jwtRules: [{issuer: x, audience: [y]}]}\n",
			`unknown field "spec.jwtRules[0].audience"`, `unknown field "spec.jwtRules[0].audience"`},
		{"field in another case", ra + "spec: {jwtRules: [{issuer: x, JwksUri: 'https://x/keys'}]}\n",
			`Istio's schema spells it "jwksUri"`, `Istio's schema spells it "jwksUri"`},
		{"every unknown field of a spec", ra + "spec: {jwtRules: [{issuer: x, audience: [y], fromHeaders: [{name: a, prefx: b}]}]}\n",
			`"spec.jwtRules[0].fromHeaders[0].prefx"`, `"spec.jwtRules[0].audience"`},
		{"a field of a port's mTLS", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p, namespace: shop}\nspec: {portLevelMtls: {'8080': {mdoe: STRICT}}}\n",
			`unknown field "spec.portLevelMtls[8080].mdoe"`, `unknown field "spec.portLevelMtls[8080].mdoe"`},
		{"unknown top-level member", ra + "spek: {}\n", `unknown field "spek"`, `unknown field "spek"`},
		{"unknown metadata field", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, lables: {app: web}}\nspec: {}\n",
			`unknown field "metadata.lables"`, ""},
		{"misspelt guardrail field", "apiVersion: meshguard.io/v1alpha1\nkind: MeshGuardrail\nmetadata: {name: g}\nspec: {rootNamespce: istio-system}\n",
			`unknown field "spec.rootNamespce"`, `unknown field "spec.rootNamespce"`},
		{"misspelt field of a pod template", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {template: {metadata: {labels: {app: web}}, spec: {containers: [{name: c, imagePullPolicy: Always, imagee: x}]}}}\n",
			`unknown field "spec.template.spec.containers[0].imagee"`, ""},
		// The API server decoded a Pod under review into its type: it is read only as far
		// as the rules need, on the hot path, and not checked again.
		{"misspelt Pod field", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {hostNetwrk: true}\n",
			`unknown field "spec.hostNetwrk"`, ""},
		// Proto JSON refuses a null in a list or map of messages, as istiod does.
		{"a null in a list", ra + "spec:\n  jwtRules:\n  -\n",
			`"spec.jwtRules[0]" is null, where Istio's schema has a JWTRule`, `"spec.jwtRules[0]" is null, where Istio's schema has a JWTRule`},
		{"a null in a map", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p, namespace: shop}\nspec: {portLevelMtls: {'8080': null}}\n",
			`"spec.portLevelMtls[8080]" is null`, `"spec.portLevelMtls[8080]" is null`},
		// Istio's CRD knows jwksUri by its proto name too (+kubebuilder:altName), and istiod
		// reads it: so does meshguard.
		{"the CRD's other name of jwksUri", ra + "spec: {jwtRules: [{issuer: x, jwks_uri: 'https://x/keys'}]}\n", "", ""},
	}
	for _, c := range cases {
		js, err := yaml.YAMLToJSON([]byte(c.input))
		if err != nil {
			t.Fatal(err)
		}
		var tm struct{ APIVersion, Kind string }
		if err := yaml.Unmarshal([]byte(c.input), &tm); err != nil {
			t.Fatal(err)
		}
		group, _, _ := strings.Cut(tm.APIVersion, "/")
		if !strings.Contains(tm.APIVersion, "/") {
			group = ""
		}
		kind := Lookup(group, tm.Kind)
		for _, origin := range []struct {
			name    string
			from    Origin
			wantErr string
		}{{"manifest", Manifest, c.manifest}, {"admission", Admission, c.admission}} {
			o, err := kind.Decode(js, origin.from)
			switch {
			case origin.wantErr == "" && err != nil:
				t.Errorf("%s, %s: %v", c.name, origin.name, err)
			case origin.wantErr != "" && (err == nil || !strings.Contains(err.Error(), origin.wantErr)):
				t.Errorf("%s, %s: error %v, want one with %q", c.name, origin.name, err, origin.wantErr)
			case err == nil && c.name == "the CRD's other name of jwksUri":
				if got := o.(*securityv1.RequestAuthentication).Spec.JwtRules[0].JwksUri; got != "https://x/keys" {
					t.Errorf("%s, %s: jwksUri %q", c.name, origin.name, got)
				}
			}
		}
	}
}
