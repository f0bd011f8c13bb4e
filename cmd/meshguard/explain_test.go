package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshguard/meshguard/policy"
	"github.com/meshguard/meshguard/policy/products"
)

// TestExplainConformance runs `meshguard explain --cases` over the conformance corpus:
// requests transcribed from Istio's documented tasks, each with the outcome the task
// states (testdata/explain/*/cases.yaml, each case naming its source).
func TestExplainConformance(t *testing.T) {
	dirs, err := filepath.Glob("testdata/explain/*")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, "cases.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var cases []explainCase
		if err := yaml.Unmarshal(data, &cases); err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			if c.Source == "" {
				t.Errorf("%s: case %q names no source", dir, c.Name)
			}
		}
		total += len(cases)
		var stdout, stderr bytes.Buffer
		if code := run([]string{"explain", "-f", filepath.Join(dir, "bundle.yaml"), "--cases", filepath.Join(dir, "cases.yaml")}, nil, &stdout, &stderr); code != 0 {
			t.Errorf("%s: exit %d\n%s%s", dir, code, stdout.String(), stderr.String())
		}
	}
	if total < 40 {
		t.Errorf("the corpus holds %d cases", total)
	}
}

// TestExplainCLI pins explain's contract: the JSON fields, a mismatching case's exit 1 and
// its table, and usage errors.
func TestExplainCLI(t *testing.T) {
	bundle := "testdata/explain/authz-jwt/bundle.yaml"
	var stdout, stderr bytes.Buffer
	code := run([]string{"explain", "-f", bundle, "--to", "Deployment/jwt-2/httpbin", "--path", "/headers", "--from-namespace", "jwt-2", "-o", "json"}, nil, &stdout, &stderr)
	var out map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &out); code != 0 || err != nil {
		t.Fatalf("exit %d, %v\n%s%s", code, err, stdout.String(), stderr.String())
	}
	for _, field := range []string{"verdict", "status", "decidedBy", "path", "findings"} {
		if _, ok := out[field]; !ok {
			t.Errorf("no %q in %s", field, stdout.String())
		}
	}
	if out["verdict"] != "deny" || out["status"] != 403.0 || !strings.Contains(out["decidedBy"].(string), "rbac_access_denied_matched_policy[none]") {
		t.Errorf("no token to require-jwt: %s", stdout.String())
	}

	wrong := filepath.Join(t.TempDir(), "cases.yaml")
	if err := os.WriteFile(wrong, []byte("- {name: wrong, source: a test, to: Deployment/jwt-2/httpbin, request: {}, expect: allow}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if code := run([]string{"explain", "-f", bundle, "--cases", wrong}, nil, &stdout, &stderr); code != exitFindings ||
		!strings.Contains(stdout.String(), "wrong") || !strings.Contains(stdout.String(), "1 cases, 0 as expected") {
		t.Errorf("a mismatching case: exit %d\n%s", code, stdout.String())
	}
	for _, args := range [][]string{
		{"explain", "-f", bundle},
		{"explain", "-f", bundle, "--to", "Deployment/jwt-2"},
		{"explain", "-f", bundle, "--to", "Deployment/jwt-2/nothing"},
		{"explain", "-f", bundle, "--to", "Deployment/jwt-2/httpbin", "--token", "sub=alice"},
		{"explain", "-f", bundle, "--to", "Deployment/jwt-2/httpbin", "--via", "sideways"},
		{"explain", "-f", bundle, "--to", "Deployment/jwt-2/httpbin", "--via", "waypoint"},
		{"explain", "-f", bundle, "--to", "Deployment/jwt-2/httpbin", "--from-plaintext", "--from-namespace", "x"},
	} {
		if code := run(args, nil, &stdout, &stderr); code != exitUsage {
			t.Errorf("%v: exit %d", args, code)
		}
	}
}

// TestCoverageCLI pins coverage's contract: the JSON fields, the summary, and --fail-on's
// exit codes.
func TestCoverageCLI(t *testing.T) {
	http := "testdata/explain/authz-http/bundle.yaml"
	var stdout, stderr bytes.Buffer
	if code := run([]string{"coverage", "-f", http, "-n", "http-3", "-o", "json"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	var report struct {
		Workloads []map[string]any `json:"workloads"`
		Summary   map[string]int   `json:"summary"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &report); err != nil {
		t.Fatal(err)
	}
	if len(report.Workloads) != 4 || report.Summary["token-optional"] != 4 {
		t.Errorf("http-3: %s", stdout.String())
	}
	for _, field := range []string{"kind", "namespace", "name", "enforcedBy", "issuers", "verdict", "exempt", "rules"} {
		if _, ok := report.Workloads[0][field]; !ok {
			t.Errorf("no %q in %v", field, report.Workloads[0])
		}
	}
	// Ingress gateways are listed apart, judged at the gateway (Istio's task, before and
	// after its AuthorizationPolicy); istiod is not a workload to report.
	for _, c := range []struct {
		bundle, workloads, gateways string
	}{
		{"testdata/explain/ingress-jwt-1/bundle.yaml", "Deployment/httpbin open", "Deployment/istio-ingressgateway token-optional"},
		{"testdata/explain/ingress-jwt-2/bundle.yaml", "Deployment/httpbin open", "Deployment/istio-ingressgateway protected"},
		{"testdata/root-namespace.yaml", "Deployment/web protected", ""},
	} {
		stdout.Reset()
		if code := run([]string{"coverage", "-f", c.bundle, "-o", "json"}, nil, &stdout, &stderr); code != 0 {
			t.Fatalf("%s: exit %d\n%s", c.bundle, code, stderr.String())
		}
		var report struct{ Workloads, IngressGateways []products.WorkloadCoverage }
		if err := json.Unmarshal(stdout.Bytes(), &report); err != nil {
			t.Fatal(err)
		}
		list := func(cs []products.WorkloadCoverage) string {
			var out []string
			for _, c := range cs {
				out = append(out, c.Kind+"/"+c.Name+" "+c.Verdict)
			}
			return strings.Join(out, "; ")
		}
		if got := list(report.Workloads); got != c.workloads {
			t.Errorf("%s: workloads %q, want %q", c.bundle, got, c.workloads)
		}
		if got := list(report.IngressGateways); got != c.gateways {
			t.Errorf("%s: ingress gateways %q, want %q", c.bundle, got, c.gateways)
		}
	}
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"coverage", "-f", http, "--fail-on", "open"}, 0},
		{[]string{"coverage", "-f", http, "--fail-on", "token-optional"}, exitFindings},
		{[]string{"coverage", "-f", "testdata/explain/ingress-jwt-1/bundle.yaml", "--fail-on", "open"}, exitFindings},
		{[]string{"coverage", "-f", http, "--fail-on", "locked"}, exitUsage},
		{[]string{"coverage", "-f", http, "-n", "x", "-A"}, exitUsage},
		{[]string{"coverage"}, exitUsage},
	} {
		if code := run(c.args, nil, &stdout, &stderr); code != c.want {
			t.Errorf("%v: exit %d, want %d", c.args, code, c.want)
		}
	}
}

// TestExplainSeeds: for each seed article, the requests an attacker would send, with their
// verdicts on the configuration as written and as fixed (testdata/explain-seeds: the
// workloads the policies are for, and each case's two verdicts).
func TestExplainSeeds(t *testing.T) {
	dirs, err := filepath.Glob("testdata/explain-seeds/*")
	if err != nil || len(dirs) != 5 {
		t.Fatalf("%d seeds (%v)", len(dirs), err)
	}
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, "cases.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var cases []struct {
			explainCase   `json:",inline"`
			Unsafe, Fixed string
		}
		if err := yaml.UnmarshalStrict(data, &cases); err != nil {
			t.Fatal(err)
		}
		for _, variant := range []string{"unsafe", "fixed"} {
			var expected []explainCase
			for _, c := range cases {
				c.Expect = policy.Verdict(map[string]string{"unsafe": c.Unsafe, "fixed": c.Fixed}[variant])
				expected = append(expected, c.explainCase)
			}
			out, err := yaml.Marshal(expected)
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "cases.yaml")
			if err := os.WriteFile(file, out, 0o644); err != nil {
				t.Fatal(err)
			}
			seed := filepath.Join("..", "..", "examples", "seeds", filepath.Base(dir), variant+".yaml")
			var stdout, stderr bytes.Buffer
			if code := run([]string{"explain", "-f", seed, "-f", filepath.Join(dir, "workloads.yaml"), "--cases", file}, nil, &stdout, &stderr); code != 0 {
				t.Errorf("%s, %s: exit %d\n%s%s", filepath.Base(dir), variant, code, stdout.String(), stderr.String())
			}
		}
	}
}

// TestExplainThroughWaypointDefaultCaller: a waypoint takes callers of the mesh only, so
// explain --via waypoint without a caller asks for one of the workload's namespace, and a
// caller without mTLS is refused for what the waypoint is, not for a PeerAuthentication
// the input does not hold.
func TestExplainThroughWaypointDefaultCaller(t *testing.T) {
	bundle := "testdata/explain/ambient-waypoint/bundle.yaml"
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "rbac_access_denied_matched_policy[none]"},
		{[]string{"--from-plaintext"}, "the connection is refused: the proxy takes HBONE only"},
	} {
		var stdout, stderr bytes.Buffer
		args := append([]string{"explain", "-f", bundle, "--to", "Service/ambient-wp/productpage", "--path", "/productpage", "--via", "waypoint", "-o", "json"}, c.args...)
		run(args, nil, &stdout, &stderr)
		var e struct{ DecidedBy string }
		if err := json.Unmarshal(stdout.Bytes(), &e); err != nil || !strings.Contains(e.DecidedBy, c.want) {
			t.Errorf("%v: decided by %q (%v)\n%s", c.args, e.DecidedBy, err, stderr.String())
		}
	}
}

// TestRootNamespace: the root namespace is istiod's where the input holds its Deployment
// (AKS's aks-istio-system), or --root-namespace, or what a guardrail names (--config):
// its policies cover every namespace.
func TestRootNamespace(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "protected"},
		{[]string{"--root-namespace", "istio-system"}, "open"},
		// A guardrail naming the root namespace (given with --config, as to check) wins.
		{[]string{"--root-namespace", "istio-system", "--config", "testdata/root-guardrail.yaml"}, "protected"},
	} {
		var stdout, stderr bytes.Buffer
		run(append([]string{"coverage", "-f", "testdata/root-namespace.yaml", "-n", "shop", "-o", "json"}, c.args...), nil, &stdout, &stderr)
		var report struct {
			Workloads []struct{ Name, Verdict string }
		}
		if err := json.Unmarshal(stdout.Bytes(), &report); err != nil || len(report.Workloads) != 1 || report.Workloads[0].Verdict != c.want {
			t.Errorf("%v: %+v (%v)\n%s", c.args, report, err, stderr.String())
		}
	}
}

// TestExplainProxies: --proxies lists what each proxy on the routes to a Service's
// workload enforces, in text and JSON, and wants --to.
func TestExplainProxies(t *testing.T) {
	bundle := "testdata/explain/ambient-waypoint/bundle.yaml"
	var stdout, stderr bytes.Buffer
	if code := run([]string{"explain", "-f", bundle, "--to", "Service/ambient-wp/productpage", "--proxies", "-o", "json"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	var out []struct {
		Workload string                      `json:"workload"`
		Proxies  []products.ProxyEnforcement `json:"proxies"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil || len(out) != 1 {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	var proxies []string
	for _, p := range out[0].Proxies {
		proxies = append(proxies, p.Proxy)
	}
	if want := []string{"waypoint ambient-wp/waypoint", "ztunnel"}; !slices.Equal(proxies, want) {
		t.Errorf("proxies %v, want %v", proxies, want)
	}
	stdout.Reset()
	if code := run([]string{"explain", "-f", bundle, "--to", "Service/ambient-wp/productpage", "--proxies"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	for _, want := range []string{"waypoint ambient-wp/waypoint (routes: waypoint ambient-wp/waypoint)", "callers: HBONE (mTLS) only", "ztunnel (routes: direct, waypoint ambient-wp/waypoint)"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the text lacks %q:\n%s", want, stdout.String())
		}
	}
	if code := run([]string{"explain", "-f", bundle, "--cases", "testdata/explain/ambient-waypoint/cases.yaml", "--proxies"}, nil, &stdout, &stderr); code != 2 {
		t.Errorf("--proxies with --cases: exit %d, want 2", code)
	}
}

// TestReadmeProxies: the README's example of --proxies is what the command prints.
func TestReadmeProxies(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const command = "$ meshguard explain -f policy/products/testdata/proxies/ambient-waypoint.yaml --to Service/shop/web --proxies\n"
	_, example, found := strings.Cut(string(readme), command)
	example, _, closed := strings.Cut(example, "```")
	if !found || !closed {
		t.Fatalf("the README has no example beginning %q", command)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"explain", "-f", "../../policy/products/testdata/proxies/ambient-waypoint.yaml", "--to", "Service/shop/web", "--proxies"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if stdout.String() != example {
		t.Errorf("the README shows:\n%s\nthe command prints:\n%s", example, stdout.String())
	}
}
