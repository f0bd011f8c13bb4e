package main

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"html"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var updateMap = flag.Bool("update-map", false, "rewrite docs/access-map.md and docs/access-map.svg from the seeds")

// seedBundle is every seed article's configuration as written, with the workloads it is
// for: the map the README shows.
func seedBundle(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob("../../examples/seeds/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no seeds (%v)", err)
	}
	var args []string
	for _, d := range dirs {
		args = append(args, "-f", filepath.Join(d, "unsafe.yaml"), "-f", filepath.Join("testdata/explain-seeds", filepath.Base(d), "workloads.yaml"))
	}
	return args
}

// largeBundle is a mesh of n workloads in 20 namespaces, each behind a Service, most
// requiring a token, some open, with an ingress gateway: the map is capped, the table not.
func largeBundle(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(`apiVersion: apps/v1
kind: Deployment
metadata: {name: istio-ingressgateway, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  template:
    metadata: {labels: {istio: ingressgateway}}
    spec: {containers: [{name: istio-proxy, image: docker.io/istio/proxyv2:1.28.5}]}
`)
	for ns := range 20 {
		fmt.Fprintf(&b, `---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: team-%[1]d}
spec:
  selector: {matchLabels: {tier: api}}
  jwtRules: [{issuer: "https://idp.example.com", jwksUri: "https://idp.example.com/keys", audiences: [team-%[1]d]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: team-%[1]d}
spec:
  selector: {matchLabels: {tier: api}}
  rules: [{from: [{source: {requestPrincipals: ["https://idp.example.com/*"]}}]}]
`, ns)
	}
	for i := range n {
		tier := "api"
		if i%7 == 0 {
			tier = "web"
		}
		fmt.Fprintf(&b, `---
apiVersion: apps/v1
kind: Deployment
metadata: {name: svc-%[1]d, namespace: team-%[2]d}
spec:
  selector: {matchLabels: {app: svc-%[1]d}}
  template:
    metadata: {labels: {app: svc-%[1]d, tier: %[3]s}}
    spec: {containers: [{name: app, image: registry.example/app:1}]}
---
apiVersion: v1
kind: Service
metadata: {name: svc-%[1]d, namespace: team-%[2]d}
spec:
  selector: {app: svc-%[1]d}
  ports: [{name: http, port: 80}]
`, i, i%20, tier)
	}
	return b.String()
}

// TestAccessMaps draws the seeds, Istio's documented tasks and a 1,000-workload mesh as
// Mermaid, Graphviz and Markdown, renders the first two as a person would see them
// (Mermaid in headless Chromium, Graphviz's dot) and finds every node of the map in the
// picture; the Markdown's table lists every workload that is not protected, however large
// the mesh.
func TestAccessMaps(t *testing.T) {
	mermaidJS := renderTools(t)
	large := largeBundle(t, 1000)
	for _, c := range []struct {
		name  string
		args  []string
		stdin string
	}{
		{"seeds", seedBundle(t), ""},
		{"Istio's tasks", []string{"-f", "testdata/explain/authz-jwt/bundle.yaml", "-f", "testdata/explain/ingress-jwt-2/bundle.yaml", "-f", "testdata/explain/peer-authn/bundle.yaml", "-f", "testdata/explain/ambient-waypoint/bundle.yaml"}, ""},
		{"1,000 workloads", []string{"-f", "-"}, large},
	} {
		t.Run(c.name, func(t *testing.T) {
			report := coverageJSON(t, c.args, c.stdin)
			m := newAccessMap(report)
			mermaid, dot := output(t, c.args, c.stdin, "mermaid"), output(t, c.args, c.stdin, "dot")
			svgs := map[string]string{"mermaid": renderMermaid(t, mermaidJS, mermaid), "dot": render(t, dot, "dot", "-Tsvg")}
			for format, svg := range svgs {
				text := svgText(t, svg)
				for _, label := range mapLabels(m) {
					if !strings.Contains(text, label) {
						t.Errorf("%s: the rendered %s map lacks %q", c.name, format, label)
					}
				}
			}
			markdown := output(t, c.args, c.stdin, "markdown")
			for _, w := range report.Workloads {
				if row := fmt.Sprintf("| %s | %s %s | %s |", w.Namespace, w.Kind, w.Name, w.Verdict); (w.Verdict != "protected" && w.Verdict != "locked") != strings.Contains(markdown, row) {
					t.Errorf("%s: the Markdown's table and %s %s/%s (%s) disagree", c.name, w.Kind, w.Namespace, w.Name, w.Verdict)
				}
			}
			if c.stdin != "" && (m.left == 0 || !strings.Contains(mermaid, fmt.Sprintf("%d more workloads: see the table", m.left))) {
				t.Errorf("%s: the map is not capped (%d left out)", c.name, m.left)
			}
		})
	}
}

// TestAccessMapDocs keeps docs/access-map.md (the seeds' map, which GitHub renders) and
// docs/access-map.svg (the same, rendered, which the README shows) in step with the code.
// Regenerate with go test ./cmd/meshguard -run AccessMapDocs -update-map.
func TestAccessMapDocs(t *testing.T) {
	mermaidJS := renderTools(t)
	args := seedBundle(t)
	mermaid := output(t, args, "", "mermaid")
	doc := "# Who can reach what: the seeds' access map\n\n" +
		"`meshguard coverage -o mermaid` of the five seed articles' configurations as written, with the\n" +
		"workloads they are for (`examples/seeds/*/unsafe.yaml`,\n" +
		"`cmd/meshguard/testdata/explain-seeds/*/workloads.yaml`). Regenerated by the tests.\n\n" +
		"```mermaid\n" + strings.ReplaceAll(mermaid, "../../", "") + "```\n"
	if *updateMap {
		svg := renderMermaid(t, mermaidJS, mermaid)
		if err := os.WriteFile("../../docs/access-map.md", []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("../../docs/access-map.svg", []byte(svg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if current, err := os.ReadFile("../../docs/access-map.md"); err != nil || string(current) != doc {
		t.Errorf("docs/access-map.md is out of date; run go test ./cmd/meshguard -run AccessMapDocs -update-map")
	}
	svg, err := os.ReadFile("../../docs/access-map.svg")
	if err != nil {
		t.Fatal(err)
	}
	text := svgText(t, string(svg))
	for _, label := range mapLabels(newAccessMap(coverageJSON(t, args, ""))) {
		if !strings.Contains(text, label) {
			t.Errorf("docs/access-map.svg lacks %q; run go test ./cmd/meshguard -run AccessMapDocs -update-map", label)
		}
	}
}

// renderTools finds what the maps are rendered with (hack/render-tools.sh, which make
// test runs). Outside make test and CI, a machine without them skips.
func renderTools(t *testing.T) string {
	t.Helper()
	js := os.Getenv("MESHGUARD_MERMAID_JS")
	_, dotErr := exec.LookPath("dot")
	_, chromiumErr := exec.LookPath("chromium")
	if js == "" || dotErr != nil || chromiumErr != nil {
		if os.Getenv("CI") != "" || js != "" {
			t.Fatalf("rendering needs Graphviz, Chromium and MESHGUARD_MERMAID_JS (hack/render-tools.sh): %v, %v", dotErr, chromiumErr)
		}
		t.Skip("rendering needs hack/render-tools.sh: run make test")
	}
	return js
}

func coverageJSON(t *testing.T, args []string, stdin string) coverageReport {
	t.Helper()
	var r coverageReport
	if err := json.Unmarshal([]byte(output(t, args, stdin, "json")), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func output(t *testing.T, args []string, stdin, format string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(append(append([]string{"coverage"}, args...), "-o", format), strings.NewReader(stdin), &stdout, &stderr); code != 0 {
		t.Fatalf("coverage -o %s: exit %d\n%s", format, code, stderr.String())
	}
	return stdout.String()
}

// mapLabels are the lines of every node's label, as a picture shows them, without
// spaces: a picture wraps long words where it likes (svgText).
func mapLabels(m accessMap) []string {
	var out []string
	nodes := m.entries
	for _, ns := range m.namespaces {
		nodes = append(nodes, ns.nodes...)
		out = append(out, "namespace"+ns.name)
	}
	for _, n := range nodes {
		for _, line := range strings.Split(n.label, "\n") {
			out = append(out, strings.Join(strings.Fields(line), ""))
		}
	}
	return out
}

// svgText is the text an SVG shows, its <text> and <foreignObject> elements' words in
// order, without spaces: Mermaid puts words, and the lines it wraps a long label into
// (within words too), in elements of their own.
func svgText(t *testing.T, svg string) string {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(svg))
	dec.Strict = false
	dec.Entity = xml.HTMLEntity
	var words []string
	depth := 0 // inside <text> or <foreignObject>
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the rendered SVG is not XML: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if tok.Name.Local == "text" || tok.Name.Local == "foreignObject" || depth > 0 {
				depth++
			}
		case xml.EndElement:
			if depth > 0 {
				depth--
			}
		case xml.CharData:
			if depth > 0 {
				words = append(words, strings.Fields(string(tok))...)
			}
		}
	}
	return strings.Join(words, "")
}

func render(t *testing.T, input, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(input)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, stderr.String())
	}
	return string(out)
}

var renderedSVG = regexp.MustCompile(`(?s)&lt;svg .*&lt;/svg&gt;`)

// renderMermaid renders a flowchart with Mermaid in headless Chromium, as GitHub's page
// would, and returns the SVG; Mermaid's own limits (edges, text size) are its defaults.
func renderMermaid(t *testing.T, mermaidJS, flowchart string) string {
	t.Helper()
	dir := t.TempDir()
	page := filepath.Join(dir, "map.html")
	src, err := os.ReadFile(mermaidJS)
	if err != nil {
		t.Fatal(err)
	}
	quoted := strings.NewReplacer("\\", "\\\\", "`", "\\`", "$", "\\$").Replace(flowchart)
	err = os.WriteFile(page, []byte(`<!doctype html><html><head><title>rendering</title></head><body><div id="out"></div>
<script>`+string(src)+`</script>
<script>
mermaid.initialize({startOnLoad: false, htmlLabels: false, flowchart: {htmlLabels: false}});
mermaid.render("map", `+"`"+quoted+"`"+`)
  .then(r => {
    const out = document.getElementById("out");
    out.innerHTML = r.svg;
    // As XML: an SVG file stands alone, in an <img> too.
    out.textContent = new XMLSerializer().serializeToString(out.firstElementChild);
    document.title = "rendered";
  })
  .catch(e => { document.getElementById("out").textContent = "mermaid: " + e; document.title = "failed"; });
</script></body></html>`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--user-data-dir="+filepath.Join(dir, "profile"),
		"--virtual-time-budget=60000", "--dump-dom", "file://"+page)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	if !bytes.Contains(out, []byte("<title>rendered</title>")) {
		i := bytes.Index(out, []byte(`<div id="out">`))
		t.Fatalf("Mermaid did not render the map: %.600s", out[max(i, 0):])
	}
	return html.UnescapeString(renderedSVG.FindString(string(out)))
}

// TestCoverageMarkdownBaseline: against coverage -o json of before, the comment says what
// a change opens and closes.
func TestCoverageMarkdownBaseline(t *testing.T) {
	const web = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: registry.example/web:1}]}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: web-jwt, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  jwtRules: [{issuer: "https://idp.example.com", jwksUri: "https://idp.example.com/keys", audiences: [web]}]
`
	const require = `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-require-jwt, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{from: [{source: {requestPrincipals: ["https://idp.example.com/*"]}}]}]
`
	before := filepath.Join(t.TempDir(), "before.json")
	if err := os.WriteFile(before, []byte(output(t, []string{"-f", "-"}, web+require, "json")), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"coverage", "-f", "-", "-o", "markdown", "--baseline", before}, strings.NewReader(web), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	for _, want := range []string{"This change **opens 1** and **closes 0** workloads.", "| shop | Deployment web | protected → token-optional | outside the mesh: no token; mesh workloads: no token | MG301 |", "```mermaid\nflowchart LR"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the comment lacks %q:\n%s", want, stdout.String())
		}
	}
	if code := run([]string{"coverage", "-f", "-", "--baseline", before}, strings.NewReader(web), &stdout, &stderr); code != exitUsage {
		t.Errorf("--baseline without -o markdown: exit %d", code)
	}
}

// TestAccessMapCollapsesReplicas: the Pods of one owner, alike in all the map shows, are
// one node; a Pod that differs is its own.
func TestAccessMapCollapsesReplicas(t *testing.T) {
	var b strings.Builder
	for _, name := range []string{"web-7d9f-a1", "web-7d9f-b2", "web-7d9f-c3", "api-5c4b-a1"} {
		app := strings.SplitN(name, "-", 2)[0]
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: shop, labels: {app: %s}}\nspec: {containers: [{name: app, image: app}]}\n", name, app)
	}
	var labels []string
	for _, ns := range newAccessMap(coverageJSON(t, []string{"-f", "-"}, b.String())).namespaces {
		for _, n := range ns.nodes {
			labels = append(labels, n.label)
		}
	}
	want := []string{"Pod api-5c4b-a1\nopen", "Pod web-7d9f-a1 (+2 alike)\nopen"}
	slices.Sort(labels)
	if !slices.Equal(labels, want) {
		t.Errorf("nodes %q, want %q", labels, want)
	}
}
