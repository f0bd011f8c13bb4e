package check

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/owenrumney/go-sarif/v2/sarif"

	"github.com/meshguard/meshguard/policy"
)

// Formats are the output formats of `meshguard check`.
var Formats = []string{"text", "json", "sarif", "github"}

// Write prints the report in one of Formats. Colour is for terminals only.
func Write(w io.Writer, format string, r Report, rules []policy.Rule, colour bool) error {
	switch format {
	case "text":
		return writeText(w, r, colour)
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case "sarif":
		return writeSARIF(w, r, rules)
	case "github":
		return writeGitHub(w, r)
	}
	return fmt.Errorf("unknown output format %q (want %s)", format, strings.Join(Formats, ", "))
}

// WriteInputErrors prints, in the formats CI reads from a file or a log (SARIF, GitHub
// workflow commands), the input errors a run stopped at: a report that is empty would say
// the input is clean. Other formats print nothing: the errors go to standard error.
func WriteInputErrors(w io.Writer, format string, err error, rules []policy.Rule) error {
	var errs []*InputError
	for _, e := range flatten(err) {
		ie, ok := e.(*InputError)
		if !ok {
			ie = &InputError{Err: e}
		}
		errs = append(errs, ie)
	}
	switch format {
	case "sarif":
		report, run, err := newSARIF(rules)
		if err != nil {
			return err
		}
		inv := sarif.NewInvocation().WithExecutionSuccess(false)
		for _, e := range errs {
			n := sarif.NewNotification().WithLevel("error").WithMessage(sarif.NewTextMessage(e.Err.Error()))
			if loc := location(e.Source); loc != nil {
				n.WithLocations([]*sarif.Location{loc})
			}
			inv.ToolExecutionNotifications = append(inv.ToolExecutionNotifications, n)
		}
		run.AddInvocations(inv)
		return report.PrettyWrite(w)
	case "github":
		var b strings.Builder
		for _, e := range errs {
			b.WriteString(workflowCommand("error", e.Source, "meshguard: input error", e.Err.Error()))
		}
		_, err := io.WriteString(w, b.String())
		return err
	}
	return nil
}

// flatten lists the errors errors.Join joined.
func flatten(err error) []error {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		return joined.Unwrap()
	}
	return []error{err}
}

// writeGitHub prints a GitHub Actions workflow command per finding, which the run's page
// shows on the line of the file, with no code scanning needed.
func writeGitHub(w io.Writer, r Report) error {
	var b strings.Builder
	for _, res := range r.Results {
		level := "warning"
		switch {
		case res.Suppressed != nil, res.Baselined:
			continue // accepted: the run's page shows what needs doing
		case res.Action == policy.Deny:
			level = "error"
		}
		b.WriteString(workflowCommand(level, res.Source, res.Rule+" "+res.Name, fmt.Sprintf("%s %s %s: %s. Fix: %s", res.Kind, objectRef(res.Namespace, res.ObjectName), res.Field, res.Message, res.Fix)))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// workflowCommand is one ::error or ::warning line, its properties and message escaped as
// GitHub's runner reads them.
func workflowCommand(level string, src Source, title, message string) string {
	property := strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C")
	data := strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A")
	var props []string
	if src.File != "" && src.File != "-" {
		props = append(props, "file="+property.Replace(src.File))
		if src.Line > 0 {
			props = append(props, fmt.Sprintf("line=%d", src.Line))
		}
	}
	props = append(props, "title="+property.Replace(title))
	return fmt.Sprintf("::%s %s::%s\n", level, strings.Join(props, ","), data.Replace(message))
}

// objectRef is namespace/name, or name for objects of no namespace.
func objectRef(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// ANSI styles for the text format.
const (
	red    = "\x1b[1;31m"
	yellow = "\x1b[1;33m"
	bold   = "\x1b[1m"
	dim    = "\x1b[2m"
	reset  = "\x1b[0m"
)

// writeText prints findings grouped by object, deny before warn, the fix under each one.
func writeText(w io.Writer, r Report, colour bool) error {
	paint := func(style, s string) string {
		if !colour {
			return s
		}
		return style + s + reset
	}
	var b strings.Builder
	var last policy.Finding
	for i, res := range r.Results {
		if i == 0 || res.Object != last.Object {
			if i > 0 {
				b.WriteByte('\n')
			}
			name := objectRef(res.Namespace, res.ObjectName)
			object := res.Source
			object.Line = res.objectLine
			fmt.Fprintf(&b, "%s %s  %s\n", paint(bold, res.Kind), paint(bold, name), paint(dim, object.String()))
		}
		last = res.Finding
		label := paint(yellow, "WARN")
		switch {
		case res.Suppressed != nil:
			label = paint(dim, "SKIP")
		case res.Baselined:
			label = paint(dim, "BASE")
		case res.Action == policy.Deny:
			label = paint(red, "DENY")
		}
		field := res.Field
		if res.Line > 0 && res.File != "" {
			field += fmt.Sprintf(" (line %d)", res.Line)
		}
		fmt.Fprintf(&b, "  %s  %s %s  %s\n", label, res.Rule, res.Name, paint(dim, field))
		fmt.Fprintf(&b, "        %s\n", res.Message)
		if res.Suppressed != nil {
			fmt.Fprintf(&b, "        suppressed (%s%s): %s\n", policy.SuppressAnnotationPrefix, res.Rule, res.Suppressed.Reason)
			continue
		}
		fmt.Fprintf(&b, "        fix: %s\n", res.Fix)
	}
	if len(r.Results) > 0 {
		b.WriteByte('\n')
	}
	s := r.Summary
	var others []string
	if s.Suppressed > 0 {
		others = append(others, fmt.Sprintf("%d suppressed", s.Suppressed))
	}
	if s.Baselined > 0 {
		others = append(others, fmt.Sprintf("%d in the baseline", s.Baselined))
	}
	suppressed := ""
	if len(others) > 0 {
		suppressed = " (and " + strings.Join(others, ", ") + ")"
	}
	fmt.Fprintf(&b, "%d deny, %d warn%s in %d objects (%d documents read, %d of kinds meshguard does not judge)\n",
		s.Deny, s.Warn, suppressed, s.Objects, s.Documents, s.Ignored)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeSARIF prints SARIF 2.1.0, as GitHub code scanning reads it.
func writeSARIF(w io.Writer, r Report, rules []policy.Rule) error {
	report, run, err := newSARIF(rules)
	if err != nil {
		return err
	}
	for _, res := range r.Results {
		level := "warning"
		if res.Action == policy.Deny {
			level = "error"
		}
		msg := fmt.Sprintf("%s %s %s: %s. Fix: %s", res.Kind, objectRef(res.Namespace, res.ObjectName), res.Field, res.Message, res.Fix)
		result := run.CreateResultForRule(res.Rule).WithLevel(level).WithMessage(sarif.NewTextMessage(msg))
		if loc := location(res.Source); loc != nil {
			result.AddLocation(loc)
		}
		if res.Baselined {
			result.WithBaselineState("unchanged")
		}
		if res.Suppressed != nil {
			// WithJustifcation is the library's spelling.
			result.WithSuppression([]*sarif.Suppression{sarif.NewSuppression("inSource").WithJustifcation(res.Suppressed.Reason)})
		}
	}
	return report.PrettyWrite(w)
}

// location is where a source is in the repository, for SARIF; nil for standard input
// not named by --stdin-filename.
func location(src Source) *sarif.Location {
	if src.File == "" || src.File == "-" {
		return nil
	}
	loc := sarif.NewPhysicalLocation().WithArtifactLocation(sarif.NewSimpleArtifactLocation(src.File))
	if src.Line > 0 {
		loc = loc.WithRegion(sarif.NewSimpleRegion(src.Line, src.Line))
	}
	return sarif.NewLocationWithPhysicalLocation(loc)
}

// newSARIF starts a SARIF report of one run, with meshguard's rules.
func newSARIF(rules []policy.Rule) (*sarif.Report, *sarif.Run, error) {
	report, err := sarif.New(sarif.Version210)
	if err != nil {
		return nil, nil, err
	}
	run := sarif.NewRunWithInformationURI("meshguard", "https://github.com/meshguard/meshguard")
	for _, rule := range rules {
		level := "warning"
		if rule.Default == policy.Deny {
			level = "error"
		}
		run.AddRule(rule.ID).
			WithName(rule.Name).
			WithShortDescription(sarif.NewMultiformatMessageString(rule.Summary)).
			WithFullDescription(sarif.NewMultiformatMessageString(rule.Why)).
			WithHelpURI("https://github.com/meshguard/meshguard/blob/main/docs/rules.md#" + strings.ToLower(rule.ID)).
			WithDefaultConfiguration(sarif.NewReportingConfiguration().WithLevel(level))
	}
	report.AddRun(run)
	return report, run, nil
}
