package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshguard/meshguard/check"
	"github.com/meshguard/meshguard/policy"
)

type coverageOptions struct {
	input     inputFlags
	namespace string
	all       bool
	output    string
	failOn    string
}

func newCoverageCommand() *cobra.Command {
	o := &coverageOptions{}
	cmd := &cobra.Command{
		Use:   "coverage (-f PATH... | --cluster) [-n NAMESPACE | -A] [-o text|json] [--fail-on open|token-optional]",
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
they are not counted by --fail-on. Exit 1 when a workload is as exposed as --fail-on (open: open or not-enforced;
token-optional: that too), 2 on bad usage or input.`,
		Example: `  meshguard coverage -f k8s/
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
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	f.StringVar(&o.failOn, "fail-on", "", "exit 1 when a workload is this exposed: open or token-optional")
	return cmd
}

// coverageReport is coverage's JSON output.
type coverageReport struct {
	Workloads []policy.WorkloadCoverage `json:"workloads"`
	// IngressGateways are judged as workloads are, at the gateway: where most JWT checks
	// of requests from outside live. Their verdicts are not in the summary nor --fail-on's:
	// a gateway forwards to workloads, whose own verdicts count.
	IngressGateways []policy.WorkloadCoverage `json:"ingressGateways"`
	Summary         map[string]int            `json:"summary"`
}

func (o *coverageOptions) run(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	switch {
	case o.output != "text" && o.output != "json":
		return usageError("-o %q: want text or json", o.output)
	case o.failOn != "" && o.failOn != policy.Open && o.failOn != policy.TokenOptional:
		return usageError("--fail-on %q: want open or token-optional", o.failOn)
	case o.all && o.namespace != "":
		return usageError("-n and -A: give one")
	}
	engine := policy.NewEngine()
	in, err := o.input.load(ctx, stdin, engine, "default")
	if err != nil {
		return err
	}
	results := check.Run(engine, in.bundle).Results // labels covered workloads, as admission would
	root := in.bundle.State.Settings("").Root
	report := coverageReport{Summary: map[string]int{}}
	judge := func(ws []*policy.Workload) []policy.WorkloadCoverage {
		out := []policy.WorkloadCoverage{}
		for _, w := range ws {
			c := policy.CoverageOf(in.bundle.State, root, w)
			for _, r := range results {
				if (r.Object == metav1.Object(w) || slices.Contains(c.Policies, policy.PolicyRef{Kind: r.Kind, Namespace: r.Namespace, Name: r.ObjectName})) && !slices.Contains(c.Rules, r.Rule) {
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
		exposed = exposed || o.failOn != "" && policy.Exposure(c.Verdict) >= policy.Exposure(o.failOn)
	}
	if o.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(report)
	} else {
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
	table := func(title string, rows []policy.WorkloadCoverage) {
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
	for _, v := range []string{policy.Protected, policy.Partial, policy.Locked, policy.TokenOptional, policy.Open, policy.NotEnforced} {
		if n[v] > 0 {
			line += fmt.Sprintf("%s%d %s", sep, n[v], v)
			sep = ", "
		}
	}
	return line
}
