package policy_test

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/check"
	"github.com/meshguard/meshguard/kinds"
	"github.com/meshguard/meshguard/policy"
)

// expectPrefix starts a line of a fixture's document that pins one finding of the
// fixture's rule on that document's object: "# expect: MG104 warn at spec.jwtRules[0]".
const expectPrefix = "# expect: "

// TestGolden runs every fixture in testdata. MGxxx-invalid.yaml and MGxxx-valid.yaml pin,
// document by document, the findings of rule MGxxx: each `# expect:` line of a document is
// one finding (rule, action and field) on its object, and there are no others; a valid
// fixture expects none, an invalid one at least one. MG501, which labels rather than
// finds, expects "MG501 label at metadata.labels[KEY]" per label it adds.
//
// A fixture whose first line is "# review: UPDATE" or "# review: DELETE" is an admission
// review: its last document is the new object (UPDATE) or names the object deleted
// (DELETE), the others are the live state.
//
// Every fixture is read twice, and both must give the expected findings: as `meshguard
// check` reads manifests, and as the webhook reads objects (decoded from the API server's
// JSON, then trimmed as its cache keeps them: only the annotations the rules read).
//
// `go test ./policy -run TestGolden -update` writes the findings found into the fixtures.
func TestGolden(t *testing.T) {
	engine := policy.NewEngine()
	readers := []struct {
		name   string
		loader check.Loader
	}{
		{"a manifest", check.Loader{Namespace: "default", Engine: engine}},
		{"the webhook reads it", check.Loader{Namespace: "default", Engine: engine, Read: func(kind *kinds.Kind, js []byte) (metav1.Object, error) {
			o, err := kind.Decode(js, kinds.Admission)
			if err == nil {
				kind.Keep(o)
			}
			return o, err
		}}},
	}
	for _, rule := range engine.Rules() {
		for _, form := range []string{"valid", "invalid"} {
			file := filepath.Join("testdata", rule.ID+"-"+form+".yaml")
			t.Run(rule.ID+"-"+form, func(t *testing.T) {
				data, err := os.ReadFile(file)
				if err != nil {
					t.Fatalf("every rule needs a %s fixture: %v", form, err)
				}
				found := map[string][]string{}
				for _, r := range readers {
					found[r.name] = goldenFindings(t, engine, rule, data, r.loader)
				}
				if *update {
					data = withExpectations(data, found[readers[0].name])
					if err := os.WriteFile(file, data, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want := expectations(data)
				if form == "invalid" && len(want) == 0 {
					t.Errorf("%s expects no %s finding: an invalid fixture pins at least one (%q lines)", file, rule.ID, expectPrefix)
				}
				if form == "valid" && len(want) > 0 {
					t.Errorf("%s expects %s findings: a valid fixture has none", file, rule.ID)
				}
				for _, r := range readers {
					if got := found[r.name]; !slices.Equal(got, want) {
						t.Errorf("%s, read as %s: found\n  %s\nwant\n  %s", file, r.name, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
					}
				}
			})
		}
	}
}

// separator starts a document, as check reads YAML streams.
var separator = regexp.MustCompile(`^---(\s|#|$)`)

// expectations returns the `# expect:` lines of a fixture, each as "document N: what",
// sorted.
func expectations(data []byte) []string {
	var out []string
	doc := 1
	for line := range strings.Lines(string(data)) {
		if separator.MatchString(line) {
			doc++
		}
		if what, ok := strings.CutPrefix(strings.TrimSpace(line), expectPrefix); ok {
			out = append(out, fmt.Sprintf("document %d: %s", doc, what))
		}
	}
	slices.Sort(out)
	return out
}

// withExpectations rewrites a fixture's `# expect:` lines as found: each document's go
// before its first line of content.
func withExpectations(data []byte, found []string) []byte {
	byDoc := map[int][]string{}
	for _, f := range found {
		var doc int
		var what string
		if n, _ := fmt.Sscanf(f, "document %d:", &doc); n == 1 {
			_, what, _ = strings.Cut(f, ": ")
			byDoc[doc] = append(byDoc[doc], expectPrefix+what+"\n")
		}
	}
	var b strings.Builder
	doc, written := 1, false
	for line := range strings.Lines(string(data)) {
		if separator.MatchString(line) {
			doc, written = doc+1, false
		} else if strings.HasPrefix(strings.TrimSpace(line), expectPrefix) {
			continue
		} else if t := strings.TrimSpace(line); !written && t != "" && !strings.HasPrefix(t, "#") {
			b.WriteString(strings.Join(byDoc[doc], ""))
			written = true
		}
		b.WriteString(line)
	}
	return []byte(b.String())
}

// goldenFindings returns the findings of one rule for a fixture, read with loader, each
// as "document N: RULE ACTION at FIELD", sorted.
func goldenFindings(t *testing.T, engine *policy.Engine, rule policy.Rule, data []byte, loader check.Loader) []string {
	t.Helper()
	var out []string
	add := func(doc int, f policy.Finding) {
		if f.Rule == rule.ID {
			out = append(out, fmt.Sprintf("document %d: %s %s at %s", doc, f.Rule, f.Action, f.Field))
		}
	}
	if !bytes.HasPrefix(data, []byte("# review: ")) {
		bundle := load(t, loader, data)
		if rule.Label == nil {
			for _, r := range check.Run(engine, bundle).Results {
				add(r.Document, r.Finding)
			}
		}
		for _, o := range bundle.Objects {
			if w, ok := o.(*policy.Workload); ok && rule.Label != nil {
				if l := engine.CoverageLabels(bundle.State, w); l != nil {
					for _, k := range slices.Sorted(maps.Keys(l.Labels)) {
						add(bundle.Sources[o].Document, policy.Finding{Rule: l.Rule, Action: "label", Field: "metadata.labels[" + k + "]"})
					}
				}
			}
		}
		slices.Sort(out)
		return out
	}
	op, _, _ := strings.Cut(strings.TrimPrefix(string(firstLine(data)), "# review: "), " ")
	cut := bytes.LastIndex(data, []byte("\n---\n"))
	live := load(t, loader, data[:cut])
	change := load(t, loader, data[cut+len("\n---\n"):])
	if len(change.Sources) != 1 {
		t.Fatalf("the last document of a review fixture must be one object, got %d", len(change.Sources))
	}
	var subject, old metav1.Object
	for o := range change.Sources {
		subject = o
	}
	for o := range live.Sources {
		if o.GetName() == subject.GetName() && o.GetNamespace() == subject.GetNamespace() && policy.KindOf(o) == policy.KindOf(subject) {
			old = o
		}
	}
	if old == nil {
		t.Fatalf("review fixture: no live object for %s/%s", subject.GetNamespace(), subject.GetName())
	}
	r := policy.Review{Operation: policy.Operation(op), Object: subject, OldObject: old, State: live.State}
	if r.Operation == policy.Delete {
		r.Object = old
	}
	last := 1
	for line := range strings.Lines(string(data)) {
		if separator.MatchString(line) {
			last++
		}
	}
	for _, f := range engine.Review(r) {
		add(last, f)
	}
	slices.Sort(out)
	return out
}

func firstLine(data []byte) []byte {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	return line
}

func load(t *testing.T, loader check.Loader, data []byte) *check.Bundle {
	t.Helper()
	loader.Stdin = bytes.NewReader(data)
	b, err := loader.Load("-")
	if err != nil {
		t.Fatal(err)
	}
	return b
}
