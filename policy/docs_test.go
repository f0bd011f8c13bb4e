package policy_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/meshguard/meshguard/policy"
)

var update = flag.Bool("update", false, "rewrite docs/rules.md from the catalog and the fixtures")

const ruleDocs = "../docs/rules.md"

// TestRuleDocs keeps docs/rules.md, the rule reference, in step with the catalog: it is made
// from each rule's entry and its golden fixtures (the unsafe and the fixed form).
// Regenerate with `make docs`.
func TestRuleDocs(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("# meshguard rule reference\n\n")
	b.WriteString("Generated from the rule catalog (`policy/`) and its fixtures (`policy/testdata/`) by `make docs`; do not edit.\n\n")
	b.WriteString("IDs and names are stable. Each rule can be set to `deny`, `warn` or `\"off\"` in a MeshGuardrail's `rules`.\n\n")
	b.WriteString("| ID | Name | Default | Judges | Finds |\n|---|---|---|---|---|\n")
	rules := policy.NewEngine().Rules()
	for _, r := range rules {
		fmt.Fprintf(&b, "| [%s](#%s) | %s | %s | %s | %s |\n", r.ID, strings.ToLower(r.ID), r.Name, r.Default, strings.Join(r.Kinds, ", "), strings.ReplaceAll(r.Summary, "|", "\\|"))
	}
	for _, r := range rules {
		fmt.Fprintf(&b, "\n## %s\n\n**%s** · default **%s** · judges %s\n\n%s\n\n**Why:** %s\n", r.ID, r.Name, r.Default, strings.Join(r.Kinds, ", "), r.Summary, r.Why)
		unsafe, fixed := policy.ReadableExamples(r.ID)
		for _, form := range []struct{ title, example string }{{"Unsafe", unsafe}, {"Fixed", fixed}} {
			if form.example == "" {
				t.Fatalf("%s has no %s example", r.ID, strings.ToLower(form.title))
			}
			fmt.Fprintf(&b, "\n%s:\n\n```yaml\n%s```\n", form.title, form.example)
		}
	}
	if *update {
		if err := os.WriteFile(ruleDocs, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	current, err := os.ReadFile(ruleDocs)
	if err != nil || !bytes.Equal(current, b.Bytes()) {
		t.Errorf("%s is out of date with the catalog; run `make docs`", ruleDocs)
	}
}
