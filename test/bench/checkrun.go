package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/meshguard/meshguard/test/bench/manifests"
)

const timeCommand = "/usr/bin/time"

// checkFigure measures `meshguard check -o json` as CI runs it, as a process: over a folder
// of generated namespace files of each size, runs times each, sizes alternated so that all
// see the same drift of a shared machine; the median wall time and peak RSS of each size.
func checkFigure(sizes []int, runs int, out io.Writer) error {
	if _, err := os.Stat(timeCommand); err != nil {
		return fmt.Errorf("-check measures peak RSS with GNU time (Debian: apt-get install time): %w", err)
	}
	dir, err := os.MkdirTemp("", "meshguard-check-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	binary := filepath.Join(dir, "meshguard")
	build := exec.Command("go", "build", "-trimpath", "-o", binary, "./cmd/meshguard")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as released: see the Makefile
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building meshguard: %w", err)
	}
	folders := make([]string, len(sizes))
	files := make([]int, len(sizes))
	for i, n := range sizes {
		folders[i] = filepath.Join(dir, fmt.Sprint(n))
		if err := os.MkdirAll(folders[i], 0o755); err != nil {
			return err
		}
		bundle := manifests.Files(n)
		files[i] = len(bundle)
		for j, f := range bundle {
			if err := os.WriteFile(filepath.Join(folders[i], fmt.Sprintf("ns-%04d.yaml", j)), f, 0o644); err != nil {
				return err
			}
		}
	}
	walls := make([][]time.Duration, len(sizes))
	rss := make([][]int64, len(sizes))
	for range runs {
		for i, folder := range folders {
			// Through GNU time, which forks meshguard from its own small process: a child of
			// this one would count this process's memory in its peak (Linux records the
			// peak of the address space a child leaves at exec).
			cmd := exec.Command(timeCommand, "-f", "%M", binary, "check", "-o", "json", "-f", folder)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			start := time.Now()
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("meshguard check over %d objects: %w\n%s", sizes[i], err, stderr.String())
			}
			walls[i] = append(walls[i], time.Since(start))
			fields := strings.Fields(stderr.String())
			kb, err := strconv.ParseInt(fields[len(fields)-1], 10, 64)
			if err != nil {
				return fmt.Errorf("reading the peak RSS GNU time gives: %q", stderr.String())
			}
			rss[i] = append(rss[i], kb<<10)
		}
	}
	fmt.Fprintf(out, "meshguard check -o json over generated namespace files (%d objects each), %d runs per size, alternated\n\n", manifests.PerNamespace, runs)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "objects\tfiles\tmedian wall\tmin\tmax\tµs/object\tmedian peak RSS\t")
	for i, n := range sizes {
		slices.Sort(walls[i])
		slices.Sort(rss[i])
		median := walls[i][len(walls[i])/2]
		fmt.Fprintf(tw, "%d\t%d\t%v\t%v\t%v\t%.1f\t%d MiB\t\n", n, files[i], median.Round(time.Millisecond),
			walls[i][0].Round(time.Millisecond), walls[i][len(walls[i])-1].Round(time.Millisecond),
			float64(median.Microseconds())/float64(n), rss[i][len(rss[i])/2]>>20)
	}
	return tw.Flush()
}
