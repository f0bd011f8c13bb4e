package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/meshguard/meshguard/check"
	"github.com/meshguard/meshguard/policy"
)

type checkOptions struct {
	input     inputFlags
	output    string
	failOn    string
	namespace string
	all       bool
	delete    bool
	// kustomizations are rendered each as a bundle of its own (-k).
	kustomizations []string
	// baseline fails only on findings not in it; writeBaseline records them.
	baseline, writeBaseline string
}

func newCheckCommand() *cobra.Command {
	o := &checkOptions{}
	cmd := &cobra.Command{
		Use:   "check [-f PATH]... [-k DIR]... [--cluster [--delete]] [--config FILE] [-o text|json|sarif|github] [--fail-on deny|warn|none]",
		Short: "Judge a folder of manifests offline, for CI, or what a cluster runs",
		Long: `check reads Kubernetes manifests (files, folders searched for .yaml, .yml and .json, or - for
standard input, e.g. the output of helm template) and judges every Istio security resource
and workload against the whole bundle. In a folder it judges the documents that are
Kubernetes objects and skips, saying so on standard error, the rest and Helm charts; a
kustomization it meets there, or names with -k, is rendered as kubectl kustomize renders it
and judged as a bundle of its own, findings pointing at the files the objects came from.

With --cluster it judges what the cluster runs instead (read-only, the kinds the webhook
watches; -n limits the report to a namespace). With --cluster and -f, it previews the files
against the cluster as admission would judge them when applied, each one on its own; with
--delete as well, when deleted (MG303 before kubectl delete).

Exit code: 0 when no finding reaches --fail-on, 1 when one does, 2 on bad usage or input.`,
		Example: `  meshguard check -f .
  meshguard check -k overlays/prod -o github
  kustomize build overlays/prod | meshguard check -f - -o sarif > meshguard.sarif
  meshguard check -f k8s/ --config guardrails.yaml --fail-on warn
  meshguard check --cluster -A
  meshguard check --cluster -f k8s/policies.yaml --delete`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.input.files, o.input.notices = append(o.input.files, args...), cmd.ErrOrStderr()
			return o.run(cmd.Context(), cmd.InOrStdin(), cmd.OutOrStdout(), cmd.Flags().Changed("namespace"))
		},
	}
	f := cmd.Flags()
	o.input.addTo(f)
	f.BoolVarP(&o.all, "all-namespaces", "A", false, "with --cluster, report every namespace (the default)")
	f.BoolVar(&o.delete, "delete", false, "with --cluster and -f, judge deleting the files' objects")
	f.StringVar(&o.baseline, "baseline", "", "file of findings --write-baseline recorded: only findings not in it fail, the others are reported as baselined")
	f.StringVar(&o.writeBaseline, "write-baseline", "", "record the findings in this file (by rule, kind, namespace, name and field) and exit 0, to adopt meshguard in a repository with findings")
	f.StringArrayVarP(&o.kustomizations, "kustomize", "k", nil, "kustomization folder to render as kubectl kustomize does and judge as a bundle of its own; repeatable")
	f.StringVarP(&o.output, "output", "o", "text", "output format: "+strings.Join(check.Formats, ", "))
	f.StringVar(&o.failOn, "fail-on", string(policy.Deny), "exit 1 when a finding of this action or stricter is found: deny or warn; none reports and exits 0")
	f.StringVarP(&o.namespace, "namespace", "n", "default", "namespace of objects that name none")
	return cmd
}

// failNever is --fail-on's value that reports and exits 0, so that the steps after it
// (a SARIF upload) run.
const failNever policy.Action = "none"

func usageError(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

func (o *checkOptions) run(ctx context.Context, stdin io.Reader, stdout io.Writer, namespaceGiven bool) error {
	if !slices.Contains(check.Formats, o.output) {
		return usageError("-o %q: want one of %s", o.output, strings.Join(check.Formats, ", "))
	}
	failOn := policy.Action(o.failOn)
	switch {
	case failOn != policy.Deny && failOn != policy.Warn && failOn != failNever:
		return usageError("--fail-on %q: want deny, warn or %s", o.failOn, failNever)
	case o.delete && (!o.input.cluster || len(o.input.files) == 0 && len(o.kustomizations) == 0):
		return usageError("--delete previews deleting files' objects from a cluster: give --cluster and -f")
	case o.all && namespaceGiven:
		return usageError("-n and -A: give one")
	}
	engine := policy.NewEngine()
	loader := o.input.loader(stdin, engine, o.namespace)
	if o.input.cluster {
		files := o.input.files
		o.input.files = nil
		live, err := o.input.load(ctx, stdin, engine, o.namespace)
		if err != nil {
			return err
		}
		if live.bundle.State.Istiod, err = live.IstiodVersions(ctx); err != nil {
			return fmt.Errorf("--cluster: reading istiod's version: %w", err)
		}
		report := check.Run(engine, live.bundle)
		if len(files) > 0 || len(o.kustomizations) > 0 {
			changes, err := o.input.readEach(loader, files, o.kustomizations)
			if err != nil {
				return o.inputFailed(stdout, engine, err)
			}
			report = check.Report{Results: []check.Result{}}
			for _, b := range changes {
				report.Append(check.Preview(engine, live.bundle.State, b, o.delete))
			}
		}
		if namespaceGiven && len(files) == 0 && len(o.kustomizations) == 0 {
			report = report.In(o.namespace)
		}
		return o.write(stdout, engine, report, failOn)
	}
	if len(o.input.files) == 0 && len(o.kustomizations) == 0 {
		return usageError("no input: give -f PATH (a file, a folder, or - for standard input), -k DIR, or --cluster")
	}
	bundles, err := o.input.readEach(loader, o.input.files, o.kustomizations)
	if err != nil {
		return o.inputFailed(stdout, engine, err)
	}
	report := check.Report{Results: []check.Result{}}
	for _, b := range bundles {
		if err := o.input.addGuardrails(loader, b); err != nil {
			return err
		}
		report.Append(check.Run(engine, b))
	}
	return o.write(stdout, engine, report, failOn)
}

// inputFailed reports input errors where CI reads the report (SARIF, GitHub), as well as
// on standard error, and gives exit code 2.
func (o *checkOptions) inputFailed(stdout io.Writer, engine *policy.Engine, err error) error {
	if werr := check.WriteInputErrors(stdout, o.output, err, engine.Rules()); werr != nil {
		return &exitError{code: exitUsage, err: werr}
	}
	return inputFailed(err)
}

// write prints the report and gives the exit code.
func (o *checkOptions) write(stdout io.Writer, engine *policy.Engine, report check.Report, failOn policy.Action) error {
	if o.writeBaseline != "" {
		if err := check.WriteBaseline(o.writeBaseline, report); err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("--write-baseline: %w", err)}
		}
		failOn = failNever
	}
	if o.baseline != "" {
		b, err := check.ReadBaseline(o.baseline)
		if err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("--baseline: %w", err)}
		}
		report = report.Against(b)
	}
	if err := check.Write(stdout, o.output, report, engine.Rules(), o.output == "text" && colourful(stdout)); err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	if failOn != failNever && report.Fails(failOn) {
		return &exitError{code: exitFindings}
	}
	return nil
}

// inputErrors puts one input error on each line.
func inputErrors(err error) error {
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		return err
	}
	var lines []string
	for _, e := range joined.Unwrap() {
		lines = append(lines, e.Error())
	}
	return errors.New(strings.Join(lines, "\nerror: "))
}

// colourful tells whether w is a terminal that wants colour (https://no-color.org).
func colourful(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && os.Getenv("NO_COLOR") == ""
}
