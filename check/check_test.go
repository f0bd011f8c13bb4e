package check

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/meshguard/meshguard/policy"
)

func loadString(t *testing.T, data string) (*Bundle, error) {
	t.Helper()
	l := &Loader{Namespace: "default", Stdin: strings.NewReader(data), Engine: policy.NewEngine()}
	return l.Load("-")
}

// verdict is one finding, as the seed tests assert them.
type verdict struct{ rule, action, object string }

func verdicts(r Report) []verdict {
	var out []verdict
	for _, res := range r.Results {
		out = append(out, verdict{res.Rule, string(res.Action), res.ObjectName})
	}
	return out
}

// TestCoverageLabelsSelected: pod templates of a covered namespace are labelled as the
// mutating webhook would label their Pods, and the policies that select by those labels
// select them.
func TestCoverageLabelsSelected(t *testing.T) {
	l := &Loader{Namespace: "default", Engine: policy.NewEngine()}
	b, err := l.Load("testdata/coverage-selected.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := verdicts(Run(policy.NewEngine(), b)); len(got) != 0 {
		t.Errorf("the labelled Deployment is protected, yet %v", got)
	}
}

// TestSeeds asserts meshguard's verdict on the configurations of the five articles our users
// copy (examples/seeds), as written and as fixed.
func TestSeeds(t *testing.T) {
	want := map[string][]verdict{
		"01-aks-ingress-entra": {
			{"MG101", "deny", "reqauth-product-jwt"}, // no audiences: an az CLI management token gets in
			{"MG116", "warn", "reqauth-product-jwt"}, // v1 issuer with the v2.0 key set
			{"MG401", "warn", "reqauth-product-jwt"},
			{"MG401", "warn", "authz-product"},
		},
		"02-entra-common-keys": {
			{"MG101", "deny", "jwt-azure"},
			{"MG104", "warn", "jwt-azure"}, // keys every tenant shares; the issuer pins one
			{"MG114", "warn", "jwt-azure"}, // Authorization no longer verified
			{"MG301", "warn", "jwt-azure"}, // the ALLOW's second source needs no token
			{"MG405", "warn", "jwt-azure"},
			{"MG307", "deny", "auth-policy"}, // notNamespaces lets plaintext callers in
			{"MG405", "warn", "auth-policy"},
		},
		"03-inline-jwk": {
			{"MG101", "deny", "validate-jwt"},
			{"MG405", "warn", "validate-jwt"},
			{"MG405", "warn", "deny-requests-without-jwt"},
		},
		"04-transparent-user-auth": {
			{"MG405", "warn", "prometheus-jwt"},
			{"MG405", "warn", "prometheus-authenticated"},
		},
		"05-authn-authz-basics": {
			{"MG101", "deny", "httpbin"},
			{"MG301", "warn", "httpbin"}, // nothing requires a token for httpbin
		},
	}
	engine := policy.NewEngine()
	dirs, _ := filepath.Glob("../examples/seeds/*")
	if len(dirs) != len(want) {
		t.Fatalf("found %d seed examples, want %d", len(dirs), len(want))
	}
	for _, dir := range dirs {
		name := filepath.Base(dir)
		for _, variant := range []string{"unsafe", "fixed"} {
			t.Run(name+"/"+variant, func(t *testing.T) {
				l := &Loader{Namespace: "default", Engine: engine}
				b, err := l.Load(filepath.Join(dir, variant+".yaml"))
				if err != nil {
					t.Fatal(err)
				}
				got := verdicts(Run(engine, b))
				expect := want[name]
				if variant == "fixed" {
					expect = nil
				}
				if !slices.Equal(got, expect) {
					t.Errorf("verdicts:\n got %v\nwant %v", got, expect)
				}
			})
		}
	}
}

func TestLoadBadInput(t *testing.T) {
	ra := "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r, namespace: a}\n"
	cases := map[string]struct {
		input string
		want  []string // substrings of the error
	}{
		"malformed YAML":        {"a: [b\n", []string{"-:1 (document 1)", "not valid YAML"}},
		"no kind":               {"apiVersion: v1\nmetadata: {name: x}\n", []string{"document 1", "has no kind"}},
		"wrong field type":      {ra + "spec: {jwtRules: yes}\n", []string{"RequestAuthentication", `"r": spec`}},
		"misspelt field":        {ra + "spec:\n  jwtRules:\n  - {issuer: x, audience: [y]}\n", []string{"audience"}},
		"unknown top field":     {ra + "spek: {}\n", []string{"spek"}},
		"second document":       {ra + "---\nkind: [\n", []string{"-:5 (document 2)"}},
		"bad guardrail":         {"apiVersion: meshguard.io/v1alpha1\nkind: MeshGuardrail\nmetadata: {name: g}\nspec: {rules: {MG999: deny, MG101: block}}\n", []string{"MG999", "block", `"g" is invalid`}},
		"controller sans pods":  {"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n", []string{`"d" has no pod template`}},
		"proto-named field":     {ra + "spec: {jwtRules: [{issuer: x, from_headers: [{name: a}]}]}\n", []string{`unknown field "spec.jwtRules[0].from_headers"`, `spells it "fromHeaders"`}},
		"version not served":    {"apiVersion: security.istio.io/v2\nkind: AuthorizationPolicy\nmetadata: {name: a}\n", []string{`"a": apiVersion "security.istio.io/v2" is not served; use security.istio.io/v1 or security.istio.io/v1beta1`}},
		"labels of wrong shape": {"apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: [a]}\n", []string{"Pod", "metadata.labels: expected an object"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := loadString(t, c.input)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadPaths(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	l := &Loader{Engine: policy.NewEngine()}
	if _, err := l.Load(empty); err == nil || !strings.Contains(err.Error(), "no .yaml, .yml or .json files") {
		t.Errorf("empty folder: %v", err)
	}
	if _, err := l.Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml: cannot stat: no such file") {
		t.Errorf("missing file: %v", err)
	}
	// Folders are read recursively; only manifest extensions count; JSON is read whole.
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "tree", "sub"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "tree", "a.yml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "tree", "notes.txt"), []byte("kind: [broken"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "tree", "sub", "b.json"), []byte(`{"apiVersion":"v1","kind":"List","items":[
		{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"p","namespace":"x"},"spec":{"mtls":{"mode":"STRICT"}}},
		{"apiVersion":"v1","kind":"Pod","metadata":{"name":"q"},"spec":{"containers":[]}}]}`), 0o644))
	b, err := l.Load(filepath.Join(dir, "tree"))
	must(err)
	if b.Documents != 2 || b.Ignored != 1 || len(b.Objects) != 2 {
		t.Errorf("documents %d, ignored %d, objects %d; want 2, 1, 2", b.Documents, b.Ignored, len(b.Objects))
	}
	if pod := b.Objects[1]; pod.GetNamespace() != "" && pod.GetNamespace() != l.Namespace {
		t.Errorf("pod namespace %q", pod.GetNamespace())
	}
}

func TestLoadDocumentsAndLines(t *testing.T) {
	b, err := loadString(t, "# leading comment\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: one}\n--- # next\n\n---\napiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: two, namespace: b}\n")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range b.Objects {
		s := b.Sources[o]
		got = append(got, o.GetNamespace()+"/"+o.GetName()+"@"+s.String())
	}
	want := []string{"default/one@-:3 (document 2)", "b/two@-:9 (document 4)"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestReports(t *testing.T) {
	engine := policy.NewEngine()
	l := &Loader{Engine: engine, Namespace: "default"}
	b, err := l.Load("../examples/seeds/02-entra-common-keys/unsafe.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := Run(engine, b)

	var js bytes.Buffer
	if err := Write(&js, "json", r, engine.Rules(), false); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Findings []map[string]any `json:"findings"`
		Summary  map[string]int   `json:"summary"`
	}
	if err := json.Unmarshal(js.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"rule", "name", "action", "kind", "namespace", "objectName", "field", "message", "fix", "file", "line", "document"} {
		if _, ok := doc.Findings[0][key]; !ok {
			t.Errorf("JSON finding lacks %q: %v", key, doc.Findings[0])
		}
	}
	if doc.Summary["deny"] != 2 || doc.Summary["warn"] != 5 {
		t.Errorf("summary %v", doc.Summary)
	}

	var sarif bytes.Buffer
	if err := Write(&sarif, "sarif", r, engine.Rules(), false); err != nil {
		t.Fatal(err)
	}
	var s struct {
		Version string `json:"version"`
		Schema  string `json:"$schema"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Rules []struct{ ID string } `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				Level     string `json:"level"`
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct{ URI string }    `json:"artifactLocation"`
						Region           struct{ StartLine int } `json:"region"`
					} `json:"physicalLocation"`
				} `json:"locations"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(sarif.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	if s.Version != "2.1.0" || len(s.Runs) != 1 || len(s.Runs[0].Tool.Driver.Rules) != len(engine.Rules()) {
		t.Fatalf("SARIF header: version %q, %d runs", s.Version, len(s.Runs))
	}
	first := s.Runs[0].Results[0]
	if first.RuleID != "MG101" || first.Level != "error" || first.Locations[0].PhysicalLocation.Region.StartLine != 13 || // its jwtRules[0], which lacks audiences
		!strings.HasSuffix(first.Locations[0].PhysicalLocation.ArtifactLocation.URI, "unsafe.yaml") {
		t.Errorf("first SARIF result: %+v", first)
	}

	var text bytes.Buffer
	if err := Write(&text, "text", r, engine.Rules(), false); err != nil {
		t.Fatal(err)
	}
	out := text.String()
	if strings.Contains(out, "\x1b[") {
		t.Error("colour codes without a terminal")
	}
	if strings.Count(out, "RequestAuthentication istio-system/jwt-azure") != 1 || !strings.Contains(out, "  DENY  MG101") || !strings.Contains(out, "fix: ") {
		t.Errorf("text report:\n%s", out)
	}
	if strings.Index(out, "DENY  MG101") > strings.Index(out, "WARN  MG104") {
		t.Error("deny should come before warn")
	}
	if err := Write(&text, "yaml", r, nil, false); err == nil {
		t.Error("unknown format accepted")
	}
}

// FuzzCheck feeds arbitrary manifests through the loader and the engine: bad input must give
// an error, never a panic.
func FuzzCheck(f *testing.F) {
	for _, pattern := range []string{"../policy/testdata/*.yaml", "../examples/seeds/*/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	engine := policy.NewEngine()
	f.Fuzz(func(t *testing.T, data []byte) {
		l := &Loader{Namespace: "default", Stdin: bytes.NewReader(data), Engine: engine}
		b, err := l.Load("-")
		if err != nil {
			return
		}
		Run(engine, b)
	})
}
