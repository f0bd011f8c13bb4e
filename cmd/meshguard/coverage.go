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
		Long: `coverage judges every workload (Pods and pod templates, Istio's own proxies aside) at the
proxies that enforce its policies, and tells:

  protected       a token is required on every path, from every caller
  partial         a token is required but on the paths listed as exempt
  token-optional  policies apply, and a request without a token gets in on a path no policy names
  open            no policy applies at all
  locked          every request is denied
  not-enforced    no proxy applies its policies (host network, injection disabled, not captured)

with the issuers and audiences accepted, and the IDs of the rules whose findings explain a
bad verdict. Exit 1 when a workload is as exposed as --fail-on (open: open or not-enforced;
token-optional: that too), 2 on bad usage or input.`,
		Example: `  meshguard coverage -f k8s/
  meshguard coverage -f k8s/ -n shop -o json
  kustomize build overlays/prod | meshguard coverage -f - --fail-on token-optional`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
	Summary   map[string]int            `json:"summary"`
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
	report := coverageReport{Workloads: []policy.WorkloadCoverage{}, Summary: map[string]int{}}
	exposed := false
	for _, w := range in.workloads(o.namespace) {
		c := policy.CoverageOf(in.bundle.State, root, w)
		for _, r := range results {
			if (r.Object == metav1.Object(w) || slices.Contains(c.Policies, policy.PolicyRef{Kind: r.Kind, Namespace: r.Namespace, Name: r.ObjectName})) && !slices.Contains(c.Rules, r.Rule) {
				c.Rules = append(c.Rules, r.Rule)
			}
		}
		slices.Sort(c.Rules)
		report.Workloads = append(report.Workloads, c)
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

// writeCoverage writes a table a person reads at a glance, a namespace after another.
func writeCoverage(w io.Writer, r coverageReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tWORKLOAD\tVERDICT\tENFORCED BY\tISSUERS\tEXEMPT\tRULES")
	dash := func(s []string) string {
		if len(s) == 0 {
			return "-"
		}
		return strings.Join(s, ",")
	}
	for i, c := range r.Workloads {
		ns := c.Namespace
		if i > 0 && r.Workloads[i-1].Namespace == ns {
			ns = ""
		}
		fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%s\t%s\t%s\n", ns, c.Kind, c.Name, c.Verdict, dash(c.EnforcedBy), dash(c.Issuers), dash(c.Exempt), dash(c.Rules))
	}
	var counts []string
	for _, v := range []string{policy.Protected, policy.Partial, policy.Locked, policy.TokenOptional, policy.Open, policy.NotEnforced} {
		if n := r.Summary[v]; n > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", n, v))
		}
	}
	noun := "workloads"
	if len(r.Workloads) == 1 {
		noun = "workload"
	}
	fmt.Fprintf(tw, "\n%d %s: %s\n", len(r.Workloads), noun, strings.Join(counts, ", "))
	return tw.Flush()
}
