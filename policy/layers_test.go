package policy_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// layers are the module's packages and the ones of the module each may import: imports
// point one way, from the binary through the front doors to the engine, and within the
// engine from the policies' meaning up, never back.
var layers = map[string][]string{
	"api/v1alpha1":      nil,
	"certs":             nil,
	"policy/rulefields": nil,
	"policy/mesh":       {"api/v1alpha1"},
	"policy/dataplane":  {"policy/mesh", "policy/rulefields"},
	"policy":            {"api/v1alpha1", "policy/dataplane", "policy/mesh", "policy/rulefields"},
	"policy/products":   {"policy/dataplane", "policy/mesh", "policy/rulefields"},
	"kinds":             {"api/v1alpha1", "policy"},
	"live":              {"kinds", "policy"},
	"check":             {"kinds", "policy", "policy/products"},
	"audit":             {"live", "policy", "policy/products"},
	"webhook":           {"api/v1alpha1", "certs", "kinds", "policy"},
	"cmd/meshguard":     {"audit", "certs", "check", "kinds", "live", "policy", "policy/products", "webhook"},
}

// TestLayers holds the module's import graph (go list) to layers.
func TestLayers(t *testing.T) {
	const module = "github.com/meshguard/meshguard/"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		if strings.HasPrefix(pkg, "test/") || strings.HasPrefix(pkg, "hack/") || strings.HasSuffix(pkg, "test") {
			continue // harnesses, build tools and test helpers
		}
		allowed, known := layers[pkg]
		if !known {
			t.Errorf("package %s has no place in the layers: add it", pkg)
			continue
		}
		seen++
		for _, imp := range fields[1:] {
			if dep, ours := strings.CutPrefix(imp, module); ours && !slices.Contains(allowed, dep) {
				t.Errorf("%s imports %s, which its layer may not", pkg, dep)
			}
		}
	}
	if seen != len(layers) {
		t.Errorf("go list gave %d of the %d packages of the layers", seen, len(layers))
	}
}
