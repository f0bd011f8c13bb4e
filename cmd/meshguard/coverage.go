package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/meshguard/meshguard/check"
	"github.com/meshguard/meshguard/policy"
	"github.com/meshguard/meshguard/policy/products"
)

type coverageOptions struct {
	input     inputFlags
	namespace string
	all       bool
	output    string
	failOn    string
	// baseline is coverage -o json of before a change: -o markdown says what it opens
	// and closes.
	baseline string
}

// coverageFormats are coverage's output formats.
var coverageFormats = []string{"text", "json", "mermaid", "dot", "markdown"}

func newCoverageCommand() *cobra.Command {
	o := &coverageOptions{}
	cmd := &cobra.Command{
		Use:   "coverage (-f PATH... | --cluster) [-n NAMESPACE | -A] [-o text|json|mermaid|dot|markdown [--baseline FILE]] [--fail-on open|token-optional]",
		Short: "Tell, for every workload, whether its requests need a token",
		Long: `coverage judges every workload (Pods and pod templates, Istio's own proxies and control
plane aside) at the proxies that enforce its policies, and tells:

  protected       a token is required on every path, from every caller
  partial         a token is required but on the paths listed as exempt
  token-optional  policies apply, and a request without a token gets in on a path no policy names
  open            no policy applies at all
  locked          every request is denied
  not-enforced    no proxy applies its policies (host network, injection disabled, not captured)

with the issuers and audiences accepted, and the IDs of the rules whose findings explain a
bad verdict. Ingress gateways are judged the same way at the gateway, and listed apart:
they are not counted by --fail-on.

-o mermaid and -o dot draw who can reach what: entry points (outside the mesh, the mesh's
workloads, each ingress gateway) to Services to workloads, coloured by verdict, each edge
labelled with what a request needs there. -o markdown is a pull-request comment: counts,
the workloads that are not protected and why, and the map; with --baseline (coverage -o
json of before), what the change opens and closes. Exit 1 when a workload is as exposed as --fail-on (open: open or not-enforced;
token-optional: that too), 2 on bad usage or input.`,
		Example: `  meshguard coverage -f k8s/ -o markdown --baseline main-coverage.json > comment.md
  meshguard coverage --cluster -o dot | dot -Tsvg > access.svg
  meshguard coverage -f k8s/
  meshguard coverage -f k8s/ -n shop -o json
  kustomize build overlays/prod | meshguard coverage -f - --fail-on token-optional`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.input.notices = cmd.ErrOrStderr()
			return o.run(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	o.input.addTo(f)
	f.StringVarP(&o.namespace, "namespace", "n", "", "the namespace to report (objects that name none are in default)")
	f.BoolVarP(&o.all, "all-namespaces", "A", false, "report every namespace (the default)")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text, json, or an access map: mermaid, dot (Graphviz), markdown (a pull-request comment)")
	f.StringVar(&o.baseline, "baseline", "", "with -o markdown, coverage -o json of before the change: say which workloads it opens and closes")
	f.StringVar(&o.failOn, "fail-on", "", "exit 1 when a workload is this exposed: open or token-optional")
	return cmd
}

// coverageReport is coverage's JSON output.
type coverageReport struct {
	Workloads []products.WorkloadCoverage `json:"workloads"`
	// IngressGateways are judged as workloads are, at the gateway: where most JWT checks
	// of requests from outside live. Their verdicts are not in the summary nor --fail-on's:
	// a gateway forwards to workloads, whose own verdicts count.
	IngressGateways []products.WorkloadCoverage `json:"ingressGateways"`
	Summary         map[string]int              `json:"summary"`
}

func (o *coverageOptions) run(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	switch {
	case !slices.Contains(coverageFormats, o.output):
		return usageError("-o %q: want one of %s", o.output, strings.Join(coverageFormats, ", "))
	case o.baseline != "" && o.output != "markdown":
		return usageError("--baseline compares for -o markdown only")
	case o.failOn != "" && o.failOn != products.Open && o.failOn != products.TokenOptional:
		return usageError("--fail-on %q: want open or token-optional", o.failOn)
	case o.all && o.namespace != "":
		return usageError("-n and -A: give one")
	}
	engine := policy.NewEngine()
	in, err := o.input.load(ctx, stdin, engine, "default")
	if err != nil {
		return err
	}
	run := check.Run(engine, in.bundle) // labels covered workloads, as admission would
	root := in.bundle.State.Settings("").Root
	report := coverageReport{Summary: map[string]int{}}
	gateways := products.IngressGateways(in.bundle.State, "")
	judge := func(ws []*policy.Workload) []products.WorkloadCoverage {
		out := []products.WorkloadCoverage{}
		for _, w := range ws {
			c := products.CoverageOf(in.bundle.State, root, w)
			if o.output != "text" {
				c.Services, c.Access = products.ServicesOf(in.bundle.State, w), products.AccessTo(in.bundle.State, root, w, gateways)
			}
			for _, r := range run.On(w, c.Policies) {
				if !slices.Contains(c.Rules, r.Rule) {
					c.Rules = append(c.Rules, r.Rule)
				}
			}
			slices.Sort(c.Rules)
			out = append(out, c)
		}
		return out
	}
	report.Workloads, report.IngressGateways = judge(in.workloads(o.namespace)), judge(in.ingressGateways(o.namespace))
	exposed := false
	for _, c := range report.Workloads {
		report.Summary[c.Verdict]++
		exposed = exposed || o.failOn != "" && products.Exposure(c.Verdict) >= products.Exposure(o.failOn)
	}
	switch o.output {
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(report)
	case "mermaid":
		err = writeMermaid(stdout, newAccessMap(report))
	case "dot":
		err = writeDOT(stdout, newAccessMap(report))
	case "markdown":
		var before *coverageReport
		if o.baseline != "" {
			if before, err = readCoverageReport(o.baseline); err != nil {
				return &exitError{code: exitUsage, err: fmt.Errorf("--baseline: %w", err)}
			}
		}
		err = writeMarkdown(stdout, report, before)
	default:
		err = writeCoverage(stdout, report)
	}
	if err != nil {
		return err
	}
	if exposed {
		return &exitError{code: exitFindings}
	}
	return nil
}

// writeCoverage writes a table a person reads at a glance, a namespace after another, and
// the ingress gateways' below it.
func writeCoverage(w io.Writer, r coverageReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	dash := func(s []string) string {
		if len(s) == 0 {
			return "-"
		}
		return strings.Join(s, ",")
	}
	table := func(title string, rows []products.WorkloadCoverage) {
		fmt.Fprintf(tw, "NAMESPACE\t%s\tVERDICT\tENFORCED BY\tISSUERS\tEXEMPT\tRULES\n", title)
		for i, c := range rows {
			ns := c.Namespace
			if i > 0 && rows[i-1].Namespace == ns {
				ns = ""
			}
			fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%s\t%s\t%s\n", ns, c.Kind, c.Name, c.Verdict, dash(c.EnforcedBy), dash(c.Issuers), dash(c.Exempt), dash(c.Rules))
		}
	}
	table("WORKLOAD", r.Workloads)
	if len(r.IngressGateways) > 0 {
		fmt.Fprintln(tw)
		table("INGRESS GATEWAY", r.IngressGateways)
	}
	fmt.Fprintf(tw, "\n%s\n", verdicts(len(r.Workloads), "workload", r.Summary))
	if len(r.IngressGateways) > 0 {
		byVerdict := map[string]int{}
		for _, c := range r.IngressGateways {
			byVerdict[c.Verdict]++
		}
		fmt.Fprintf(tw, "and %s\n", verdicts(len(r.IngressGateways), "ingress gateway", byVerdict))
	}
	return tw.Flush()
}

// verdicts says how many things there are, and how many have each verdict, from the best.
func verdicts(total int, thing string, n map[string]int) string {
	line := fmt.Sprintf("%d %ss", total, thing)
	if total == 1 {
		line = "1 " + thing
	}
	sep := ": "
	for _, v := range []string{products.Protected, products.Partial, products.Locked, products.TokenOptional, products.Open, products.NotEnforced} {
		if n[v] > 0 {
			line += fmt.Sprintf("%s%d %s", sep, n[v], v)
			sep = ", "
		}
	}
	return line
}

func readCoverageReport(path string) (*coverageReport, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r coverageReport
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: not coverage -o json: %w", path, err)
	}
	return &r, nil
}

// writeMarkdown writes a pull-request comment: the counts, what the change opens and
// closes (against before, when given), every workload that is not protected with why, and
// the access map.
func writeMarkdown(w io.Writer, r coverageReport, before *coverageReport) error {
	var b strings.Builder
	b.WriteString("### meshguard coverage\n\n")
	fmt.Fprintf(&b, "**%s**", verdicts(len(r.Workloads), "workload", r.Summary))
	if len(r.IngressGateways) > 0 {
		byVerdict := map[string]int{}
		for _, c := range r.IngressGateways {
			byVerdict[c.Verdict]++
		}
		fmt.Fprintf(&b, "; %s", verdicts(len(r.IngressGateways), "ingress gateway", byVerdict))
	}
	b.WriteString("\n\n")
	row := func(c products.WorkloadCoverage, verdict string) {
		rules := strings.Join(c.Rules, ", ")
		if rules == "" {
			rules = "–"
		}
		fmt.Fprintf(&b, "| %s | %s %s | %s | %s | %s |\n", c.Namespace, c.Kind, c.Name, verdict, cell(why(c)), rules)
	}
	header := "| Namespace | Workload | Verdict | Who gets in | Rules |\n|---|---|---|---|---|\n"
	if before != nil {
		was := map[string]products.WorkloadCoverage{}
		for _, c := range before.Workloads {
			was[c.Kind+"/"+c.Namespace+"/"+c.Name] = c
		}
		var opens, closes []products.WorkloadCoverage
		for _, c := range r.Workloads {
			old, ok := was[c.Kind+"/"+c.Namespace+"/"+c.Name]
			switch {
			case !ok && products.Exposure(c.Verdict) > 0, ok && products.Exposure(c.Verdict) > products.Exposure(old.Verdict):
				opens = append(opens, c)
			case ok && products.Exposure(c.Verdict) < products.Exposure(old.Verdict):
				closes = append(closes, c)
			}
		}
		fmt.Fprintf(&b, "This change **opens %d** and **closes %d** workloads.\n\n", len(opens), len(closes))
		for _, part := range []struct {
			title string
			rows  []products.WorkloadCoverage
		}{{"Opened", opens}, {"Closed", closes}} {
			if len(part.rows) == 0 {
				continue
			}
			fmt.Fprintf(&b, "%s:\n\n%s", part.title, header)
			for _, c := range part.rows {
				verdict := c.Verdict
				if old, ok := was[c.Kind+"/"+c.Namespace+"/"+c.Name]; ok {
					verdict = old.Verdict + " → " + c.Verdict
				}
				row(c, verdict)
			}
			b.WriteString("\n")
		}
	}
	var exposed []products.WorkloadCoverage
	for _, c := range r.Workloads {
		if products.Exposure(c.Verdict) > 0 {
			exposed = append(exposed, c)
		}
	}
	if len(exposed) == 0 {
		b.WriteString("Every workload requires a token, or lets nothing in.\n\n")
	} else {
		fmt.Fprintf(&b, "Not protected:\n\n%s", header)
		for _, c := range exposed {
			row(c, c.Verdict)
		}
		b.WriteString("\n")
	}
	b.WriteString("<details><summary>Who can reach what</summary>\n\n```mermaid\n")
	if err := writeMermaid(&b, newAccessMap(r)); err != nil {
		return err
	}
	b.WriteString("```\n\n</details>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// why says who gets in without a token, from where.
func why(c products.WorkloadCoverage) string {
	var parts []string
	for _, a := range c.Access {
		if a.Needs == products.NeedsNothing || a.Needs == products.NeedsToken && len(a.Exempt) > 0 {
			parts = append(parts, a.From+": "+needs(a))
		}
	}
	if c.Verdict == products.NotEnforced {
		parts = append([]string{"no proxy enforces its policies"}, parts...)
	}
	if len(parts) == 0 {
		return "–"
	}
	return strings.Join(parts, "; ")
}

// cell escapes a Markdown table cell.
func cell(s string) string { return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s) }
