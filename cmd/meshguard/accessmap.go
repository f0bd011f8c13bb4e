package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/meshguard/meshguard/policy"
	"github.com/meshguard/meshguard/policy/products"
)

// An access map is coverage as a picture: entry points (outside the mesh, the mesh's
// workloads, each ingress gateway) → Services → workloads, the workloads coloured by
// verdict, each edge labelled with what a request needs there. Entries from which nothing
// gets in are not drawn; the table beside the map has them.
type accessMap struct {
	entries    []mapNode
	namespaces []mapNamespace
	edges      []mapEdge
	// left counts the workloads the map leaves out to stay readable (and within what
	// Mermaid renders by default); shown are the most exposed.
	left int
}

type mapNode struct {
	id, label string
	// class is the workload's verdict, "entry" or "service".
	class string
}

type mapNamespace struct {
	name  string
	nodes []mapNode
}

type mapEdge struct{ from, to, label string }

// Limits of a map: Mermaid refuses more than 500 edges and 50,000 characters by default,
// and GitHub renders with the defaults.
const (
	maxMapEdges     = 400
	maxMapWorkloads = 150
)

// verdictColours colour workloads by verdict, from best to worst, in the legend's order.
var verdictColours = []struct{ verdict, fill string }{
	{products.Protected, "#2e7d32"},
	{products.Partial, "#827717"},
	{products.Locked, "#455a64"},
	{products.TokenOptional, "#e65100"},
	{products.Open, "#c62828"},
	{products.NotEnforced, "#6a1b9a"},
}

// newAccessMap lays out a coverage report. Pods alike (one namespace, Services, verdict
// and access: an owner's replicas) are one node.
func newAccessMap(r coverageReport) accessMap {
	m := accessMap{}
	entryID := map[string]string{}
	entry := func(label string) string {
		if id, ok := entryID[label]; ok {
			return id
		}
		id := fmt.Sprintf("e%d", len(entryID))
		entryID[label] = id
		m.entries = append(m.entries, mapNode{id: id, label: label, class: "entry"})
		return id
	}
	entry(products.FromOutside)
	entry(products.FromMesh)
	for _, g := range r.IngressGateways {
		id := entry("ingress " + g.Namespace + "/" + g.Name)
		for _, a := range g.Access {
			if a.From == products.FromOutside && a.Needs != products.Refused {
				m.edges = append(m.edges, mapEdge{entryID[products.FromOutside], id, needs(a)})
			}
		}
	}

	type group struct {
		first products.WorkloadCoverage
		alike int
	}
	var groups []*group
	for _, c := range r.Workloads {
		i := slices.IndexFunc(groups, func(g *group) bool { return c.Kind == policy.KindPod && alike(g.first, c) })
		if i < 0 {
			groups = append(groups, &group{first: c})
			continue
		}
		groups[i].alike++
	}
	// The most exposed first, so that a capped map shows what needs fixing.
	slices.SortStableFunc(groups, func(a, b *group) int {
		return products.Exposure(b.first.Verdict) - products.Exposure(a.first.Verdict)
	})

	nsIndex := map[string]int{}
	serviceID := map[string]string{}
	seen := map[mapEdge]bool{}
	for i, g := range groups {
		c := g.first
		var edges []mapEdge
		wid := fmt.Sprintf("w%d", i)
		var targets []string
		newServices := map[string]mapNode{} // by namespace/name, until the workload is drawn
		for _, svc := range c.Services {
			key := c.Namespace + "/" + svc
			id, ok := serviceID[key]
			if !ok {
				id = fmt.Sprintf("s%d", len(serviceID)+len(newServices))
				newServices[key] = mapNode{id: id, label: "Service " + svc, class: "service"}
			}
			targets = append(targets, id)
			edges = append(edges, mapEdge{id, wid, ""})
		}
		if len(targets) == 0 {
			targets = []string{wid}
		}
		for _, a := range c.Access {
			if a.Needs == products.Refused {
				continue
			}
			for _, t := range targets {
				edges = append(edges, mapEdge{entry(a.From), t, needs(a)})
			}
		}
		fresh := slices.DeleteFunc(edges, func(e mapEdge) bool { return seen[e] })
		if len(m.edges)+len(fresh) > maxMapEdges || i >= maxMapWorkloads {
			for _, g := range groups[i:] {
				m.left += 1 + g.alike
			}
			break
		}
		for _, e := range fresh {
			seen[e] = true
		}
		m.edges = append(m.edges, fresh...)
		at, ok := nsIndex[c.Namespace]
		if !ok {
			at = len(m.namespaces)
			nsIndex[c.Namespace] = at
			m.namespaces = append(m.namespaces, mapNamespace{name: c.Namespace})
		}
		ns := &m.namespaces[at]
		for _, svc := range c.Services {
			if s, ok := newServices[c.Namespace+"/"+svc]; ok {
				serviceID[c.Namespace+"/"+svc] = s.id
				ns.nodes = append(ns.nodes, s)
			}
		}
		label := c.Kind + " " + c.Name
		if g.alike > 0 {
			label += fmt.Sprintf(" (+%d alike)", g.alike)
		}
		ns.nodes = append(ns.nodes, mapNode{id: wid, label: label + "\n" + c.Verdict, class: c.Verdict})
	}
	slices.SortStableFunc(m.namespaces, func(a, b mapNamespace) int { return cmp.Compare(a.name, b.name) })
	return m
}

// alike tells whether two workloads are drawn as one: Pods of one owner.
func alike(a, b products.WorkloadCoverage) bool {
	return a.Namespace == b.Namespace && a.Verdict == b.Verdict && slices.Equal(a.Services, b.Services) && slices.EqualFunc(a.Access, b.Access, func(x, y products.Access) bool {
		return x.From == y.From && needs(x) == needs(y)
	}) && commonStem(a.Name, b.Name)
}

// commonStem tells whether two Pod names are replicas' (web-7d9f-abcde, web-7d9f-fghij):
// the same but for their last part.
func commonStem(a, b string) bool {
	i, j := strings.LastIndex(a, "-"), strings.LastIndex(b, "-")
	return i > 0 && j > 0 && a[:i] == b[:j]
}

// needs says what a request needs on an edge.
func needs(a products.Access) string {
	switch a.Needs {
	case products.NeedsNothing:
		if len(a.Only) > 0 {
			return "no token, on " + strings.Join(a.Only, ", ") + " only"
		}
		return "no token"
	case products.NeedsIdentity:
		return "mTLS as " + strings.Join(a.Identities, ", ")
	}
	s := "token of " + strings.Join(a.Issuers, ", ")
	if len(a.Audiences) > 0 {
		s += " for " + strings.Join(a.Audiences, ", ")
	}
	if len(a.Exempt) > 0 {
		s += "; none on " + strings.Join(a.Exempt, ", ")
	}
	if len(a.Identities) > 0 {
		s += "; or mTLS as " + strings.Join(a.Identities, ", ")
	}
	return s
}

// writeMermaid draws the map as a Mermaid flowchart, which GitHub, GitLab and Azure
// DevOps render in Markdown.
func writeMermaid(w io.Writer, m accessMap) error {
	var b strings.Builder
	text := strings.NewReplacer(`"`, "#quot;", "<", "#lt;", ">", "#gt;", "\n", "<br/>")
	b.WriteString("flowchart LR\n")
	for _, e := range m.entries {
		fmt.Fprintf(&b, "  %s([\"%s\"]):::entry\n", e.id, text.Replace(e.label))
	}
	for i, ns := range m.namespaces {
		fmt.Fprintf(&b, "  subgraph n%d[\"namespace %s\"]\n", i, text.Replace(ns.name))
		for _, n := range ns.nodes {
			if n.class == "service" {
				fmt.Fprintf(&b, "    %s[/\"%s\"/]:::service\n", n.id, text.Replace(n.label))
			} else {
				fmt.Fprintf(&b, "    %s[\"%s\"]:::%s\n", n.id, text.Replace(n.label), classID(n.class))
			}
		}
		b.WriteString("  end\n")
	}
	if m.left > 0 {
		fmt.Fprintf(&b, "  more[\"%d more workloads: see the table\"]:::entry\n", m.left)
	}
	for _, e := range m.edges {
		if e.label == "" {
			fmt.Fprintf(&b, "  %s --> %s\n", e.from, e.to)
		} else {
			fmt.Fprintf(&b, "  %s -->|\"%s\"| %s\n", e.from, text.Replace(e.label), e.to)
		}
	}
	b.WriteString("  subgraph legend[\"verdicts\"]\n")
	for _, v := range verdictColours {
		fmt.Fprintf(&b, "    l_%s[\"%s\"]:::%s\n", classID(v.verdict), v.verdict, classID(v.verdict))
	}
	b.WriteString("  end\n")
	b.WriteString("  classDef entry fill:#eceff1,stroke:#455a64,color:#000\n")
	b.WriteString("  classDef service fill:#e3f2fd,stroke:#1565c0,color:#000\n")
	for _, v := range verdictColours {
		fmt.Fprintf(&b, "  classDef %s fill:%s,stroke:#000,color:#fff\n", classID(v.verdict), v.fill)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// classID is a verdict as a Mermaid class or Graphviz identifier.
func classID(verdict string) string { return strings.ReplaceAll(verdict, "-", "_") }

// writeDOT draws the map for Graphviz, namespaces as clusters: for meshes too large to
// read as Mermaid.
func writeDOT(w io.Writer, m accessMap) error {
	var b strings.Builder
	quote := func(s string) string {
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
	}
	fill := map[string]string{"entry": "#eceff1", "service": "#e3f2fd"}
	for _, v := range verdictColours {
		fill[v.verdict] = v.fill
	}
	node := func(indent string, n mapNode) {
		font, shape := "#ffffff", "box"
		switch n.class {
		case "entry":
			font, shape = "#000000", "oval"
		case "service":
			font, shape = "#000000", "parallelogram"
		}
		fmt.Fprintf(&b, "%s%s [label=%s, shape=%s, fillcolor=%s, fontcolor=%s];\n", indent, n.id, quote(n.label), shape, quote(fill[n.class]), quote(font))
	}
	b.WriteString("digraph access {\n  rankdir=LR;\n  node [style=\"rounded,filled\", fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n")
	for _, e := range m.entries {
		node("  ", e)
	}
	for i, ns := range m.namespaces {
		fmt.Fprintf(&b, "  subgraph cluster_%d {\n    label=%s;\n", i, quote("namespace "+ns.name))
		for _, n := range ns.nodes {
			node("    ", n)
		}
		b.WriteString("  }\n")
	}
	if m.left > 0 {
		node("  ", mapNode{id: "more", label: fmt.Sprintf("%d more workloads: see the table", m.left), class: "entry"})
	}
	for _, e := range m.edges {
		fmt.Fprintf(&b, "  %s -> %s [label=%s];\n", e.from, e.to, quote(e.label))
	}
	b.WriteString("  subgraph cluster_legend {\n    label=\"verdicts\";\n")
	for _, v := range verdictColours {
		node("    ", mapNode{id: "l_" + classID(v.verdict), label: v.verdict, class: v.verdict})
	}
	b.WriteString("  }\n}\n")
	_, err := io.WriteString(w, b.String())
	return err
}
