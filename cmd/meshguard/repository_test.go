package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// repo is a repository as GitOps keeps one: a Helm chart, a CI workflow, documentation
// settings, and plain manifests beside them.
const repo = "testdata/repo"

// TestCheckRepository: `check -f .` from a repository's root judges its Kubernetes objects,
// and says in one line on standard error what it skipped and why; a file named on the
// command line is read as strictly as ever.
func TestCheckRepository(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check", "-f", repo, "-o", "json"}, nil, &stdout, &stderr); code != exitFindings {
		t.Fatalf("exit %d, want %d\n%s", code, exitFindings, stderr.String())
	}
	var report struct {
		Findings []struct {
			Rule, File string
			Line       int
		}
		Summary struct{ Documents, Objects int }
	}
	if err := json.Unmarshal(stdout.Bytes(), &report); err != nil {
		t.Fatal(err)
	}
	// k8s/web.yaml's two objects, and the kustomizations' each rendered on its own: the
	// base and both overlays name the same objects, which no apply sends together. Only
	// staging's patch opens orders, at the object of the base it came from.
	var found []string
	for _, f := range report.Findings {
		found = append(found, fmt.Sprintf("%s %s:%d", f.Rule, f.File, f.Line))
	}
	want := []string{"MG101 " + repo + "/k8s/web.yaml:16", "MG301 " + repo + "/k8s/web.yaml:14", "MG301 " + repo + "/deploy/base/security.yaml:6"}
	if !slices.Equal(found, want) || report.Summary.Documents != 2+3*3 {
		t.Errorf("found %q in %d documents, want %q in 11", found, report.Summary.Documents, want)
	}
	notice := stderr.String()
	for _, want := range []string{"meshguard: skipped Helm charts", "helm template " + repo + "/charts/web | meshguard check -f -", "files with no Kubernetes object: " + repo + "/mkdocs.yml"} {
		if !strings.Contains(notice, want) {
			t.Errorf("standard error %q lacks %q", notice, want)
		}
	}
	if strings.Count(notice, "\n") != 1 {
		t.Errorf("standard error is not one line: %q", notice)
	}
	for _, named := range []string{repo + "/charts/web/Chart.yaml", repo + "/charts/web/templates/deployment.yaml", repo + "/mkdocs.yml"} {
		stderr.Reset()
		if code := run([]string{"check", "-f", named}, nil, &stdout, &stderr); code != exitUsage {
			t.Errorf("%s named: exit %d, want %d\n%s", named, code, exitUsage, stderr.String())
		}
	}
}

// TestCheckInputErrors: an input that cannot be what the cluster gets is an error that
// names where, never a pass.
func TestCheckInputErrors(t *testing.T) {
	const ra = `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: web-jwt, namespace: shop}
spec:
  jwtRules: [{issuer: "https://idp.example.com", jwksUri: "https://idp.example.com/keys", audiences: [web]}]
`
	for _, c := range []struct {
		name, stdin, want string
	}{
		{"nothing", "", "-: no Kubernetes objects in the input"},
		{"comments only", "# rendered nothing\n---\n", "no Kubernetes objects in the input"},
		{"the same object twice", ra + "---\n" + ra, "-:7 (document 2): RequestAuthentication shop/web-jwt is also at -:1 (document 1)"},
		{"a duplicate key", ra + "---\n" + strings.Replace(ra, "metadata: {name: web-jwt, namespace: shop}", "metadata: {name: web-jwt, name: api-jwt, namespace: shop}", 1), `line 9: key "name" already set in map`},
		{"no name", strings.Replace(ra, "name: web-jwt, ", "", 1), "RequestAuthentication has no metadata.name"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"check", "-f", "-"}, strings.NewReader(c.stdin), &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%s: exit %d, want %d and %q in\n%s", c.name, code, exitUsage, c.want, stderr.String())
		}
	}
}

// TestCheckForCI: the formats CI reads carry every finding at its file and line, input
// errors included, and --fail-on none lets the steps after check run.
func TestCheckForCI(t *testing.T) {
	web := repo + "/k8s/web.yaml"
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check", "-f", web, "-o", "github", "--fail-on", "none"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("--fail-on none: exit %d\n%s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "::error file="+web+",line=") || !strings.Contains(lines[0], ",title=MG101 ra-missing-audiences::RequestAuthentication shop/web-jwt") || !strings.HasPrefix(lines[1], "::warning file="+web+",") {
		t.Errorf("-o github:\n%s", stdout.String())
	}

	// Standard input named by --stdin-filename is located in SARIF.
	stdin := strings.NewReader(mustRead(t, web))
	stdout.Reset()
	if code := run([]string{"check", "-f", "-", "--stdin-filename", "k8s/web.yaml", "-o", "sarif"}, stdin, &stdout, &stderr); code != exitFindings {
		t.Fatalf("sarif: exit %d\n%s", code, stderr.String())
	}
	var sarif struct {
		Runs []struct {
			Results []struct {
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct{ URI string }
						Region           struct{ StartLine int }
					}
				}
			}
			Invocations []struct {
				ExecutionSuccessful        bool
				ToolExecutionNotifications []struct{ Message struct{ Text string } }
			}
		}
	}
	if err := json.Unmarshal(stdout.Bytes(), &sarif); err != nil {
		t.Fatal(err)
	}
	results := sarif.Runs[0].Results
	if len(results) != 2 || len(results[0].Locations) != 1 || results[0].Locations[0].PhysicalLocation.ArtifactLocation.URI != "k8s/web.yaml" || results[0].Locations[0].PhysicalLocation.Region.StartLine == 0 {
		t.Errorf("sarif results %+v", results)
	}

	// An input error is in the SARIF file, not an empty one.
	stdout.Reset()
	if code := run([]string{"check", "-f", "-", "-o", "sarif"}, strings.NewReader(""), &stdout, &stderr); code != exitUsage {
		t.Fatalf("empty input: exit %d", code)
	}
	if err := json.Unmarshal(stdout.Bytes(), &sarif); err != nil {
		t.Fatal(err)
	}
	inv := sarif.Runs[0].Invocations
	if len(inv) != 1 || inv[0].ExecutionSuccessful || len(inv[0].ToolExecutionNotifications) != 1 || !strings.Contains(inv[0].ToolExecutionNotifications[0].Message.Text, "no Kubernetes objects") {
		t.Errorf("sarif of an input error: %s", stdout.String())
	}
}

// TestRulesCommand: the catalog, whole or by ID, for people and for tooling.
func TestRulesCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"rules", "MG101", "mg301"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	for _, want := range []string{"MG101 ra-missing-audiences (default deny; judges RequestAuthentication)", "Why: ", "Unsafe:\n\n    # expect: MG101", "MG301 ra-without-enforcement"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("rules MG101 MG301 lacks %q", want)
		}
	}
	stdout.Reset()
	if code := run([]string{"rules", "-o", "json"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("-o json: exit %d", code)
	}
	var entries []ruleEntry
	if err := json.Unmarshal(stdout.Bytes(), &entries); err != nil {
		t.Fatal(err)
	}
	if len(entries) < 70 || entries[0].ID != "MG101" || entries[0].Examples.Unsafe == "" || entries[0].Examples.Fixed == "" || entries[0].Why == "" {
		t.Errorf("%d entries, the first %+v", len(entries), entries[0])
	}
	if code := run([]string{"rules", "MG999"}, nil, &stdout, &stderr); code != exitUsage {
		t.Errorf("rules MG999: exit %d, want %d", code, exitUsage)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCheckKustomize: -k renders one kustomization, as kubectl kustomize does; commands
// that judge one bundle skip the kustomizations a folder walk meets, and say how to render
// them.
func TestCheckKustomize(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check", "-k", repo + "/deploy/overlays/prod", "-k", repo + "/deploy/overlays/staging", "-o", "github"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	if got := stdout.String(); strings.Count(got, "\n") != 1 || !strings.HasPrefix(got, "::warning file="+repo+"/deploy/base/security.yaml,line=6,title=MG301") {
		t.Errorf("-o github:\n%s", got)
	}
	stderr.Reset()
	if code := run([]string{"check", "-k", repo + "/k8s"}, nil, &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), "no kustomization.yaml in this folder") {
		t.Errorf("-k of a folder with no kustomization: exit %d\n%s", code, stderr.String())
	}
	stderr.Reset()
	if code := run([]string{"coverage", "-f", repo}, nil, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "kubectl kustomize "+repo+"/deploy/base") {
		t.Errorf("coverage -f %s: exit %d\n%s", repo, code, stderr.String())
	}
}

// TestCheckSuppression: a finding accepted on its object, with a reason, is reported as
// such and fails nothing; a deny finding only where a guardrail lets it be accepted.
func TestCheckSuppression(t *testing.T) {
	const ra = `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: web-jwt
  namespace: shop
  annotations:
    ignore.meshguard.io/MG301: "the ingress gateway requires tokens on every path"
    ignore.meshguard.io/MG101: "the issuer mints tokens for this API only"
spec:
  selector: {matchLabels: {app: web}}
  jwtRules: [{issuer: "https://idp.example.com", jwksUri: "https://idp.example.com/keys"}]
`
	config := filepath.Join(t.TempDir(), "guardrails.yaml")
	if err := os.WriteFile(config, []byte("apiVersion: meshguard.io/v1alpha1\nkind: MeshGuardrail\nmetadata: {name: platform}\nspec: {suppressible: [MG101]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	type report struct {
		Findings []struct {
			Rule       string
			Suppressed *struct{ Reason string }
		}
		Summary struct{ Deny, Warn, Suppressed int }
	}
	for _, c := range []struct {
		name       string
		args       []string
		code       int
		suppressed []string
	}{
		{"warnings only", []string{"--fail-on", "warn"}, exitFindings, []string{"MG301"}},
		{"MG101 suppressible", []string{"--fail-on", "warn", "--config", config}, 0, []string{"MG301", "MG101"}},
	} {
		var stdout, stderr bytes.Buffer
		args := append([]string{"check", "-f", "-", "-o", "json"}, c.args...)
		if code := run(args, strings.NewReader(ra), &stdout, &stderr); code != c.code {
			t.Errorf("%s: exit %d, want %d\n%s", c.name, code, c.code, stderr.String())
		}
		var r report
		if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		var suppressed []string
		for _, f := range r.Findings {
			if f.Suppressed != nil && f.Suppressed.Reason != "" {
				suppressed = append(suppressed, f.Rule)
			}
		}
		slices.Sort(suppressed)
		slices.Sort(c.suppressed)
		if !slices.Equal(suppressed, c.suppressed) || r.Summary.Suppressed != len(c.suppressed) || r.Summary.Deny+r.Summary.Warn+r.Summary.Suppressed != len(r.Findings) {
			t.Errorf("%s: suppressed %v, summary %+v", c.name, suppressed, r.Summary)
		}
	}
	var stdout, stderr bytes.Buffer
	run([]string{"check", "-f", "-", "-o", "sarif"}, strings.NewReader(ra), &stdout, &stderr)
	if !strings.Contains(stdout.String(), `"justification": "the ingress gateway requires tokens on every path"`) {
		t.Errorf("SARIF has no suppression:\n%s", stdout.String())
	}
	stdout.Reset()
	run([]string{"check", "-f", "-"}, strings.NewReader(ra), &stdout, &stderr)
	if !strings.Contains(stdout.String(), "SKIP  MG301") || !strings.Contains(stdout.String(), "1 deny, 0 warn (and 1 suppressed)") {
		t.Errorf("text:\n%s", stdout.String())
	}
}

// TestCheckBaseline: a repository adopts meshguard with its findings recorded; later runs
// fail only on new ones, and say how many were in the baseline.
func TestCheckBaseline(t *testing.T) {
	baseline := filepath.Join(t.TempDir(), "meshguard-baseline.json")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check", "-f", repo + "/k8s", "--write-baseline", baseline, "--fail-on", "warn"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("--write-baseline: exit %d\n%s", code, stderr.String())
	}
	recorded := mustRead(t, baseline)
	if !strings.Contains(recorded, `"rule": "MG101"`) || strings.Contains(recorded, `"line"`) {
		t.Errorf("baseline:\n%s", recorded)
	}
	stdout.Reset()
	if code := run([]string{"check", "-f", repo + "/k8s", "--baseline", baseline, "--fail-on", "warn"}, nil, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "0 deny, 0 warn (and 2 in the baseline)") {
		t.Errorf("--baseline, nothing new: exit %d\n%s", code, stdout.String())
	}
	// A second RequestAuthentication without audiences is new.
	_, ra, _ := strings.Cut(mustRead(t, repo+"/k8s/web.yaml"), "---\n")
	added := strings.ReplaceAll(ra, "web-jwt", "web-jwt-2")
	stdout.Reset()
	if code := run([]string{"check", "-f", repo + "/k8s", "-f", "-", "--baseline", baseline, "-o", "json"}, strings.NewReader(added), &stdout, &stderr); code != exitFindings {
		t.Errorf("--baseline, a new finding: exit %d\n%s", code, stdout.String())
	}
	if code := run([]string{"check", "-f", repo + "/k8s", "--baseline", repo + "/k8s/web.yaml"}, nil, &stdout, &stderr); code != exitUsage {
		t.Errorf("--baseline of another file: exit %d", code)
	}
}
