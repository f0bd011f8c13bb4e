// Command bench is meshguard's load generator. For each cluster size it fills the informer
// cache of `meshguard serve` with a synthetic cluster, serves meshguard's webhooks and a null
// handler on the same HTTPS server stack, and a bare net/http handler beside it (the floor
// of any Go webhook), and posts recorded AdmissionReviews (reviews/) over keep-alive
// connections, alternating meshguard, null and bare phases. It prints latency quantiles,
// throughput, their ratios to the null handler and to the bare one, and the cache's memory.
//
//	go run ./test/bench -pods 1000,10000,100000 -conns 64
//
// With -apiserver it measures instead RequestAuthentication creates through a real
// kube-apiserver, with and without meshguard registered (see apiserver.go); with -writes,
// security policy writes through it as GitOps tools make them (writes.go); with -growth,
// how the p99 grows with the cluster, each size served by its own process (growth.go).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

type options struct {
	pods                 []int
	podsPerNamespace     int
	policiesPerNamespace int
	conns                int
	phase, warmup        time.Duration
	rounds               int
	cpuProfile           string
	nullCPUProfile       string
	memProfile           string
	apiserver            int
	writes               int
	growth               bool
	check                string
	runs                 int
}

// positives reads a flag's comma-separated positive numbers.
func positives(flag, list string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%s: %q is not a positive number", flag, p)
		}
		out = append(out, n)
	}
	return out, nil
}

func main() {
	ctrllog.SetLogger(logr.Discard())
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	var o options
	var pods string
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&pods, "pods", "1000,10000,100000", "cluster sizes in Pods, comma-separated")
	fs.IntVar(&o.podsPerNamespace, "pods-per-namespace", 20, "Pods in each namespace")
	fs.IntVar(&o.policiesPerNamespace, "policies-per-namespace", 4, "RequestAuthentications and AuthorizationPolicies in each namespace, half each")
	fs.IntVar(&o.conns, "conns", 64, "concurrent keep-alive connections")
	// Short phases, many times alternated: on a shared machine the speed drifts, and both
	// handlers must see the same drift.
	fs.DurationVar(&o.phase, "phase", time.Second, "length of one meshguard or null phase")
	fs.IntVar(&o.rounds, "rounds", 25, "meshguard and null phases alternated this many times per size")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "load before measuring, per size and handler")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of a meshguard phase at the largest size (with -apiserver: of the meshguard process, during its first round) to this file")
	fs.StringVar(&o.nullCPUProfile, "null-cpuprofile", "", "write a CPU profile of the null phase beside the profiled meshguard phase to this file, for the floor")
	fs.StringVar(&o.memProfile, "memprofile", "", "write a heap profile of the largest size, taken after its load (cache, views and server), to this file")
	fs.IntVar(&o.apiserver, "apiserver", 0, "instead: this many RequestAuthentication creates through a real kube-apiserver, with and without meshguard")
	fs.IntVar(&o.writes, "writes", 0, "instead: security policy writes through a real kube-apiserver, kubectl apply of this many policies among them (see writes.go)")
	fs.BoolVar(&o.growth, "growth", false, "instead: serve each size from its own process, all at once, and alternate the load between them")
	fs.StringVar(&o.check, "check", "", "instead: `meshguard check -o json` as a process over generated bundles of these sizes in objects, comma-separated")
	fs.IntVar(&o.runs, "runs", 11, "with -check: runs per size")
	// Internal: the server processes of -growth and -writes.
	serveSize := fs.Int("serve-size", 0, "")
	serveBareHandler := fs.Bool("serve-bare", false, "")
	readyFile := fs.String("ready-file", "", "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.apiserver > 0 {
		return apiServerFigure(context.Background(), o, out)
	}
	if o.writes > 0 {
		return writesFigure(context.Background(), o, out)
	}
	if *serveSize > 0 {
		return serveOneSize(o, *serveSize, *readyFile)
	}
	if *serveBareHandler {
		return serveBare(*readyFile)
	}
	if o.check != "" {
		sizes, err := positives("-check", o.check)
		if err != nil {
			return err
		}
		return checkFigure(sizes, o.runs, out)
	}
	var err error
	if o.pods, err = positives("-pods", pods); err != nil {
		return err
	}
	if o.podsPerNamespace <= 0 || o.policiesPerNamespace < 2 || o.policiesPerNamespace%2 != 0 || o.conns <= 0 || o.rounds <= 0 {
		return errors.New("-pods-per-namespace and -conns must be positive, -policies-per-namespace even and at least 2, -rounds positive")
	}
	if o.growth {
		return growthFigure(o, out)
	}
	reviews, err := loadReviews()
	if err != nil {
		return err
	}
	var profs phaseProfiles
	for _, p := range []struct {
		path string
		into **os.File
	}{{o.cpuProfile, &profs.meshguard}, {o.nullCPUProfile, &profs.null}} {
		if p.path == "" {
			continue
		}
		f, err := os.Create(p.path)
		if err != nil {
			return err
		}
		defer f.Close()
		*p.into = f
	}

	fmt.Fprintf(out, "%d connections, %d × %v phases per handler after %v warm-up; reviews: %s\n\n",
		o.conns, o.rounds, o.phase, o.warmup, names(reviews))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pods\tnamespaces\tpolicies\thandler\tp50\tp99\tp99.9\treq/s\tp99 ratio\treq/s ratio\theap/pod\theap/policy\tviews/pod\tRSS\t")
	var growth, floors []string
	var firstP99, firstNullP99 time.Duration
	for i, pods := range o.pods {
		s := shape{pods: pods, podsPerNamespace: o.podsPerNamespace, policiesPerNamespace: o.policiesPerNamespace}
		last := i == len(o.pods)-1
		var profiles phaseProfiles
		if last {
			profiles = profs
		}
		m, ph, err := measure(s, reviews, o, profiles, last)
		if err != nil {
			return fmt.Errorf("%d Pods: %w", pods, err)
		}
		mg, null, bare := ph.meshguard, ph.null, ph.bare
		q := func(r result, f float64) time.Duration { return r.quantile(f).Round(time.Microsecond) }
		fmt.Fprintf(tw, "%d\t%d\t%d\tmeshguard\t%v\t%v\t%v\t%.0f\t%.2f\t%.2f\t%.0f B\t%.0f B\t%.0f B\t%d MiB\t\n",
			pods, s.namespaces(), s.policies(), q(mg, 0.5), q(mg, 0.99), q(mg, 0.999), mg.rate(),
			float64(mg.quantile(0.99))/float64(null.quantile(0.99)), mg.rate()/null.rate(), m.perPod, m.perPolicy, m.viewsPerPod, m.rss>>20)
		fmt.Fprintf(tw, "\t\t\tnull\t%v\t%v\t%v\t%.0f\t\t\t\t\t\t\n", q(null, 0.5), q(null, 0.99), q(null, 0.999), null.rate())
		fmt.Fprintf(tw, "\t\t\tbare\t%v\t%v\t%v\t%.0f\t\t\t\t\t\t\n", q(bare, 0.5), q(bare, 0.99), q(bare, 0.999), bare.rate())
		floors = append(floors, fmt.Sprintf("at %d Pods, meshguard against the bare handler: p99 %.2f×, throughput %.2f×", pods,
			float64(mg.quantile(0.99))/float64(bare.quantile(0.99)), mg.rate()/bare.rate()))
		if i == 0 {
			firstP99, firstNullP99 = mg.quantile(0.99), null.quantile(0.99)
		} else {
			// Sizes are measured one after the other, not alternated: the null handler's growth
			// in the same process tells the machine's drift and the heap's weight from meshguard's.
			growth = append(growth, fmt.Sprintf("meshguard p99 at %d Pods / at %d Pods: %.2f (null handler: %.2f)", pods, o.pods[0],
				float64(mg.quantile(0.99))/float64(firstP99), float64(null.quantile(0.99))/float64(firstNullP99)))
		}
	}
	tw.Flush()
	for _, g := range append(floors, growth...) {
		fmt.Fprintln(out, g)
	}
	fmt.Fprintln(out, "views/pod is the heap the namespace views add, per Pod, once both views of every namespace are built")
	fmt.Fprintf(out, "RSS is the process's (server, cache and load generator) once the cache has synced; peak RSS %d MiB\n", peakRSS()>>20)
	return nil
}

func names(reviews []review) string {
	var n []string
	for _, r := range reviews {
		n = append(n, r.name)
	}
	return strings.Join(n, ", ")
}

// phaseProfiles are the files CPU profiles of the first meshguard and null phases go to, if any.
type phaseProfiles struct{ meshguard, null *os.File }

// profiled runs one phase, under a CPU profile written to *into if that is set; the
// profile is taken once.
func profiled(into **os.File, phase func() (result, error)) (result, error) {
	if *into == nil {
		return phase()
	}
	if err := pprof.StartCPUProfile(*into); err != nil {
		return result{}, err
	}
	r, err := phase()
	pprof.StopCPUProfile()
	*into = nil
	return r, err
}

// measure builds one cluster size and alternates meshguard, null and bare phases over it.
func measure(s shape, reviews []review, o options, profs phaseProfiles, last bool) (memory, phases, error) {
	ctx, cancel := context.WithCancel(context.Background())
	var ph phases
	c, m, wait, err := startCache(ctx, s)
	if err != nil {
		cancel()
		return m, ph, err
	}
	defer wait()
	defer cancel()
	e, err := serve(ctx, c, o.conns)
	if err != nil {
		return m, ph, err
	}
	before := heapInUse()
	if err := e.warmViews(s, reviews); err != nil {
		return m, ph, err
	}
	m.viewsPerPod = float64(int64(heapInUse())-int64(before)) / float64(s.pods)
	// Warm all: connections, caches, the Go scheduler.
	for _, t := range []target{meshguardTarget, nullTarget, bareTarget} {
		if _, err := e.load(reviews, o.conns, o.warmup, t); err != nil {
			return m, ph, err
		}
	}
	for range o.rounds {
		for _, p := range []struct {
			into    *result
			profile **os.File
			target  target
		}{{&ph.meshguard, &profs.meshguard, meshguardTarget}, {&ph.null, &profs.null, nullTarget}, {&ph.bare, new(*os.File), bareTarget}} {
			r, err := profiled(p.profile, func() (result, error) { return e.load(reviews, o.conns, o.phase, p.target) })
			if err != nil {
				return m, ph, err
			}
			p.into.add(r)
		}
	}
	for _, r := range []*result{&ph.meshguard, &ph.null, &ph.bare} {
		slices.Sort(r.latencies)
	}
	if last && o.memProfile != "" {
		return m, ph, writeHeapProfile(o.memProfile)
	}
	return m, ph, nil
}

// phases are the latencies of each handler's phases at one size.
type phases struct{ meshguard, null, bare result }

// writeHeapProfile writes the heap as the last collection left it.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
