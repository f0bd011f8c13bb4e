package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/meshguard/meshguard/policy"
)

// ruleEntry is a rule's catalog entry, as `rules -o json` gives it to tooling.
type ruleEntry struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Default  string   `json:"default"`
	Kinds    []string `json:"kinds"`
	OnDelete bool     `json:"onDelete"`
	Summary  string   `json:"summary"`
	Why      string   `json:"why"`
	// Examples are the unsafe form the rule finds, and the fixed one it does not.
	Examples struct {
		Unsafe string `json:"unsafe"`
		Fixed  string `json:"fixed"`
	} `json:"examples"`
	Docs string `json:"docs"`
}

func newRulesCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "rules [ID...] [-o text|json]",
		Short: "The rule catalog: every rule as a table, or the entries of the rules named",
		Long: `rules lists the catalog: ID, name, default action and what each rule finds. Given rule IDs,
it prints their entries whole: the kinds judged, why it matters, and an unsafe and a fixed
example. -o json gives the entries as a JSON array, for tooling.`,
		Example: `  meshguard rules
  meshguard rules MG101 MG301
  meshguard rules -o json`,
		RunE: func(cmd *cobra.Command, ids []string) error {
			if output != "text" && output != "json" {
				return usageError("-o %q: want text or json", output)
			}
			rules := policy.NewEngine().Rules()
			var picked []policy.Rule
			for _, id := range ids {
				i := slices.IndexFunc(rules, func(r policy.Rule) bool { return strings.EqualFold(r.ID, id) })
				if i < 0 {
					return usageError("no rule %q (meshguard rules lists them)", id)
				}
				picked = append(picked, rules[i])
			}
			switch {
			case output == "json" && len(ids) == 0:
				return writeRulesJSON(cmd.OutOrStdout(), rules)
			case output == "json":
				return writeRulesJSON(cmd.OutOrStdout(), picked)
			case len(ids) == 0:
				return writeRulesTable(cmd.OutOrStdout(), rules)
			}
			return writeRuleEntries(cmd.OutOrStdout(), picked)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func entryOf(r policy.Rule) ruleEntry {
	e := ruleEntry{ID: r.ID, Name: r.Name, Default: string(r.Default), Kinds: r.Kinds, OnDelete: r.OnDelete, Summary: r.Summary, Why: r.Why,
		Docs: "https://github.com/meshguard/meshguard/blob/main/docs/rules.md#" + strings.ToLower(r.ID)}
	e.Examples.Unsafe, e.Examples.Fixed = policy.Examples(r.ID)
	return e
}

func writeRulesJSON(w io.Writer, rules []policy.Rule) error {
	entries := make([]ruleEntry, len(rules))
	for i, r := range rules {
		entries[i] = entryOf(r)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(entries)
}

func writeRulesTable(w io.Writer, rules []policy.Rule) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tDEFAULT\tFINDS")
	for _, r := range rules {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.ID, r.Name, r.Default, r.Summary)
	}
	return tw.Flush()
}

func writeRuleEntries(w io.Writer, rules []policy.Rule) error {
	var b strings.Builder
	for i, r := range rules {
		e := entryOf(r)
		e.Examples.Unsafe, e.Examples.Fixed = policy.ReadableExamples(r.ID)
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s %s (default %s; judges %s)\n\n%s\n\nWhy: %s\n\nUnsafe:\n\n%s\nFixed:\n\n%s\nMore: %s\n",
			e.ID, e.Name, e.Default, strings.Join(e.Kinds, ", "), e.Summary, e.Why, indent(e.Examples.Unsafe), indent(e.Examples.Fixed), e.Docs)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// indent indents a text by four spaces, a line after another.
func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if line != "" {
			b.WriteString("    " + line)
		}
	}
	return b.String()
}
