package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"
)

// growthFigure measures how the p99 grows with the cluster. Each size is served by its own
// process (this command again, with -serve-size), all at once, each with the heap a
// webhook in a cluster of that size has; the load alternates between them, meshguard and
// null, so the machine's drift falls on every size alike.
func growthFigure(o options, out io.Writer) error {
	reviews, err := loadReviews()
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "meshguard-growth-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	type server struct {
		s      shape
		e      *endpoint
		mg, nl result
	}
	var servers []*server
	for _, pods := range o.pods {
		base, ca, stop, err := serverProcess(exe, filepath.Join(dir, strconv.Itoa(pods)), "-serve-size", strconv.Itoa(pods),
			"-pods-per-namespace", strconv.Itoa(o.podsPerNamespace), "-policies-per-namespace", strconv.Itoa(o.policiesPerNamespace))
		if err != nil {
			return fmt.Errorf("%d Pods: %w", pods, err)
		}
		defer stop()
		s := shape{pods: pods, podsPerNamespace: o.podsPerNamespace, policiesPerNamespace: o.policiesPerNamespace}
		e := newEndpoint(base, o.conns, nil, ca)
		if err := e.warmViews(s, reviews); err != nil {
			return fmt.Errorf("%d Pods: %w", pods, err)
		}
		servers = append(servers, &server{s: s, e: e})
	}
	phase := func(sv *server, d time.Duration, into *result, t target) error {
		r, err := sv.e.load(reviews, o.conns, d, t)
		if into != nil {
			into.add(r)
		}
		return err
	}
	for _, sv := range servers {
		if err := phase(sv, o.warmup, nil, meshguardTarget); err != nil {
			return err
		}
		if err := phase(sv, o.warmup, nil, nullTarget); err != nil {
			return err
		}
	}
	for range o.rounds {
		for _, sv := range servers {
			if err := phase(sv, o.phase, &sv.mg, meshguardTarget); err != nil {
				return err
			}
			if err := phase(sv, o.phase, &sv.nl, nullTarget); err != nil {
				return err
			}
		}
	}
	for _, sv := range servers {
		slices.Sort(sv.mg.latencies)
		slices.Sort(sv.nl.latencies)
	}
	fmt.Fprintf(out, "one server process per size, all at once; %d connections, %d × %v phases per size and handler, alternated\n\n", o.conns, o.rounds, o.phase)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "pods\thandler\tp50\tp99\tp99.9\treq/s\tp99 / first size\t")
	first := servers[0]
	for _, sv := range servers {
		for _, h := range []struct {
			name     string
			r, first result
		}{{"meshguard", sv.mg, first.mg}, {"null", sv.nl, first.nl}} {
			q := func(f float64) time.Duration { return h.r.quantile(f).Round(time.Microsecond) }
			fmt.Fprintf(tw, "%d\t%s\t%v\t%v\t%v\t%.0f\t%.2f\t\n", sv.s.pods, h.name, q(0.5), q(0.99), q(0.999), h.r.rate(),
				float64(h.r.quantile(0.99))/float64(h.first.quantile(0.99)))
		}
	}
	return tw.Flush()
}

// serverProcess starts this command again with args (-serve-size, -serve-bare) and waits
// for it to write its base URL and CA to the file ready; stop ends it.
func serverProcess(exe, ready string, args ...string) (base string, ca []byte, stop func(), err error) {
	cmd := exec.Command(exe, append(args, "-ready-file", ready)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop = func() { _ = cmd.Process.Signal(syscall.SIGTERM); <-exited }
	if base, ca, err = awaitServer(ready, exited); err != nil {
		stop()
		return "", nil, nil, err
	}
	return base, ca, stop, nil
}

// awaitServer waits for a server process to write its base URL and CA to ready.
func awaitServer(ready string, exited chan error) (base string, ca []byte, _ error) {
	for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); {
		if data, err := os.ReadFile(ready); err == nil {
			base, ca, _ := bytes.Cut(data, []byte("\n"))
			return string(base), ca, nil
		}
		select {
		case err := <-exited:
			exited <- err // for the deferred cleanup
			return "", nil, fmt.Errorf("the server process exited: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	return "", nil, fmt.Errorf("the server process was not ready within 10 minutes")
}

// serveOneSize is the server side of growthFigure: one cluster size, served until SIGTERM.
func serveOneSize(o options, pods int, ready string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	c, _, wait, err := startCache(ctx, shape{pods: pods, podsPerNamespace: o.podsPerNamespace, policiesPerNamespace: o.policiesPerNamespace})
	if err != nil {
		return err
	}
	defer wait()
	base, ca, err := serveHandlers(ctx, c)
	if err != nil {
		return err
	}
	return announce(ctx, ready, base, ca)
}

// serveBare is the bare handler in a process of its own, as a webhook runs (-serve-bare),
// served until SIGTERM.
func serveBare(ready string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	base, ca, err := startBare(ctx)
	if err != nil {
		return err
	}
	return announce(ctx, ready, base, ca)
}

// announce writes a server's base URL and CA to the file ready, and waits for ctx to end.
func announce(ctx context.Context, ready, base string, ca []byte) error {
	// Written whole, then renamed: the parent never reads half a file.
	if err := os.WriteFile(ready+".tmp", append([]byte(base+"\n"), ca...), 0o600); err != nil {
		return err
	}
	if err := os.Rename(ready+".tmp", ready); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}
