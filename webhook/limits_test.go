package webhook

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/meshguard/meshguard/policy"
)

// testLimits are DefaultLimits scaled down so that a test sees each one act.
func testLimits() Limits {
	l := DefaultLimits()
	l.MaxBody, l.SmallBody, l.BodyBudget = 1<<20, 1<<10, 3<<19
	l.InFlight, l.QueueWait = 1, 100*time.Millisecond
	l.ReadTimeout, l.WriteTimeout, l.ReviewTimeout = 300*time.Millisecond, 2*time.Second, time.Second
	return l
}

// limited serves h under limits on a loopback HTTP server.
func limited(t *testing.T, limits Limits, h http.Handler) *httptest.Server {
	ts := httptest.NewServer(newLimiter(limits, nil).wrap(h))
	t.Cleanup(ts.Close)
	return ts
}

// send posts body and returns the status and the response body.
func send(t *testing.T, url string, body []byte) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func TestLimits(t *testing.T) {
	limits := testLimits()
	release := make(chan struct{})
	blocking := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		_, _ = io.Copy(io.Discard, r.Body)
	})
	ts := limited(t, limits, blocking)

	t.Run("a body over MaxBody is refused unread", func(t *testing.T) {
		code, _ := send(t, ts.URL, bytes.Repeat([]byte("x"), int(limits.MaxBody)+1))
		if code != http.StatusRequestEntityTooLarge {
			t.Errorf("HTTP %d", code)
		}
	})
	t.Run("a slow body is cut at ReadTimeout", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
		start := time.Now()
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Errorf("a stalled body was answered HTTP %d", resp.StatusCode)
			}
		}
		if elapsed := time.Since(start); elapsed > 3*time.Second {
			t.Errorf("the stalled connection was held %v", elapsed)
		}
	})
	t.Run("large bodies beyond the budget are refused at once", func(t *testing.T) {
		// One stalled large body holds most of the budget; the next large one is refused.
		conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n{", limits.MaxBody)
		time.Sleep(50 * time.Millisecond)
		if code, _ := send(t, ts.URL, bytes.Repeat([]byte(" "), int(limits.MaxBody)-1)); code != http.StatusServiceUnavailable {
			t.Errorf("HTTP %d", code)
		}
		// Small bodies need no budget.
		if code, _ := send(t, ts.URL, []byte("{}")); code != http.StatusOK {
			t.Errorf("a small body while the budget is spent: HTTP %d", code)
		}
	})
	// holdSlot has a review take the one slot until release; the function it returns
	// waits for that review to end.
	holdSlot := func(t *testing.T) (ended func()) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			send(t, ts.URL+"/block", []byte("{}"))
		}()
		time.Sleep(50 * time.Millisecond)
		return func() { <-done }
	}
	t.Run("a Pod review has slots of its own", func(t *testing.T) {
		ended := holdSlot(t)
		pod := reviewBody(t, admissionv1.Create, "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop}\nspec: {containers: [{name: web, image: web}]}", "", false)
		if code, _ := send(t, ts.URL, pod); code != http.StatusOK {
			t.Errorf("a Pod review while a policy review holds every slot: HTTP %d", code)
		}
		release <- struct{}{}
		ended()
	})
	t.Run("beyond InFlight, a review waits QueueWait, then is refused", func(t *testing.T) {
		ended := holdSlot(t)
		start := time.Now()
		code, _ := send(t, ts.URL, []byte("{}"))
		if code != http.StatusTooManyRequests || time.Since(start) > time.Second {
			t.Errorf("HTTP %d after %v", code, time.Since(start))
		}
		close(release)
		ended()
	})
}

// TestReviewTimeout: a review stops when its context is done, and the answer is an error
// for the failure policy to settle, not a verdict on what was judged so far.
func TestReviewTimeout(t *testing.T) {
	srv := newServer(t, true, raGood)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	resp := srv.Validating().Handle(ctx, admissionRequest(t, admissionv1.Create, apRequire))
	if resp.Allowed || resp.Result.Code != http.StatusServiceUnavailable || !strings.Contains(resp.Result.Message, "ran out of time") {
		t.Errorf("allowed=%v %+v", resp.Allowed, resp.Result)
	}
}

// admissionRequest is the request of reviewBody.
func admissionRequest(t *testing.T, op admissionv1.Operation, obj string) admission.Request {
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(reviewBody(t, op, obj, "", false), &ar); err != nil {
		t.Fatal(err)
	}
	return admission.Request{AdmissionRequest: *ar.Request}
}

// TestRespondBounded: however many findings, the response stays small: denials and
// warnings capped with a count of the rest, the audit annotation under maxAudit.
func TestRespondBounded(t *testing.T) {
	var fs []policy.Finding
	for i := range 50000 {
		action := policy.Warn
		if i%2 == 0 {
			action = policy.Deny
		}
		fs = append(fs, policy.Finding{Rule: fmt.Sprintf("MG%d", 100+i%700), Name: "n", Action: action, Kind: "AuthorizationPolicy",
			Field: "spec.rules[0]", Message: strings.Repeat("long message ", 200), Fix: "fix"})
	}
	resp := respond(fs, false, false)
	if n := len(resp.Warnings); n != maxWarnings+1 || !strings.Contains(resp.Warnings[maxWarnings], "and 24990 more") {
		t.Errorf("%d warnings, last %q", n, resp.Warnings[len(resp.Warnings)-1])
	}
	for _, w := range resp.Warnings {
		if len(w) > maxWarningLength {
			t.Errorf("a warning of %d bytes", len(w))
		}
	}
	msg := resp.Result.Message
	if resp.Allowed || len(msg) > (maxDenials+2)*(maxDenialLength+4) || !strings.Contains(msg, "… and 24980 more") {
		t.Errorf("a denial of %d bytes: %.200s…", len(msg), msg)
	}
	if a := resp.AuditAnnotations["findings"]; len(a) > maxAudit || !strings.HasSuffix(a, ",…") {
		t.Errorf("audit annotation of %d bytes", len(a))
	}
	if a := respond(fs[:3], false, false).AuditAnnotations["findings"]; a != "MG100=deny,MG101=warn,MG102=deny" {
		t.Errorf("audit annotation %q", a)
	}
}

// TestMalformedCorpus: requests the API server would never send, or an attacker would,
// each answered cleanly (an AdmissionReview refusing it, or an HTTP error), with the
// server alive and judging afterwards.
func TestMalformedCorpus(t *testing.T) {
	srv := newServer(t, true, shop)
	mux := http.NewServeMux()
	mux.Handle(ValidatePath, &admission.Webhook{Handler: srv.Validating()})
	mux.Handle(MutatePath, &admission.Webhook{Handler: srv.Mutating()})
	ts := limited(t, DefaultLimits(), mux)

	valid := string(reviewBody(t, admissionv1.Create, raGood, "", false))
	pod := string(reviewBody(t, admissionv1.Create, "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\nspec: {containers: [{name: c, image: i}]}", "", false))
	corpus := map[string]string{
		"empty":          "",
		"null":           "null",
		"an array":       "[]",
		"a string":       `"AdmissionReview"`,
		"a number":       "42",
		"not JSON":       "{{",
		"not UTF-8":      "{\"request\":{\"uid\":\"\xff\xfe\"}}",
		"a BOM":          "\ufeff" + valid,
		"whitespace":     strings.Repeat(" ", 3<<20),
		"over MaxBody":   `{"pad":"` + strings.Repeat("x", 5<<20) + `"}`,
		"deep arrays":    strings.Repeat("[", 100000) + strings.Repeat("]", 100000),
		"deep objects":   strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000),
		"deep spec":      strings.Replace(valid, `"spec":{`, `"spec":{"x":`+strings.Repeat("[", 10000)+strings.Repeat("]", 10000)+",", 1),
		"a long name":    strings.Replace(valid, `"name":"web-jwt"`, `"name":"`+strings.Repeat("n", 1<<20)+`"`, 1),
		"many keys":      strings.Replace(valid, `"spec":{`, `"spec":{`+strings.Repeat(`"k":1,`, 100000), 1),
		"no request":     `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`,
		"request null":   `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`,
		"request string": `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":"x"}`,
		"v1beta1 review": strings.Replace(valid, "admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1),
	}
	// Truncated at every twentieth of its length.
	for i := 1; i < 20; i++ {
		corpus[fmt.Sprintf("truncated at %d/20", i)] = valid[:len(valid)*i/20]
	}
	// Fields of the wrong type, kinds and versions meshguard does not read.
	for name, edit := range map[string][2]string{
		"uid a number":           {`"uid":"uid-1"`, `"uid":1`},
		"kind a string":          {`"kind":{"group":"security.istio.io"`, `"kind":"x","k":{"group":"security.istio.io"`},
		"operation a number":     {`"operation":"CREATE"`, `"operation":7`},
		"operation unknown":      {`"operation":"CREATE"`, `"operation":"EXPLODE"`},
		"dryRun a string":        {`"dryRun":false`, `"dryRun":"no"`},
		"object an array":        {`"object":{`, `"object":[{`},
		"object a string":        {`"object":{"apiVersion"`, `"object":"x","o":{"apiVersion"`},
		"metadata a list":        {`"metadata":{`, `"metadata":[{`},
		"labels a list":          {`"selector":{"matchLabels":{"app":"web"}}`, `"selector":{"matchLabels":["app"]}`},
		"jwtRules an object":     {`"jwtRules":[`, `"jwtRules":{"x":[`},
		"issuer a number":        {`"issuer":"` + iss + `"`, `"issuer":5`},
		"audiences a string":     {`"audiences":["api://web"]`, `"audiences":"api://web"`},
		"spec null":              {`"spec":{`, `"spec":null,"s":{`},
		"a ConfigMap":            {`"kind":"RequestAuthentication"}`, `"kind":"ConfigMap"}`},
		"a kind with no group":   {`"group":"security.istio.io"`, `"group":""`},
		"a version not served":   {`"version":"v1"`, `"version":"v1alpha9"`},
		"no version":             {`"version":"v1"`, `"version":""`},
		"an unknown group":       {`"group":"security.istio.io"`, `"group":"evil.example.com"`},
		"an unknown spec field":  {`"jwtRules":[`, `"jwt_rules":[`},
		"an unknown enum value":  {`"selector":`, `"action":"MAYBE","selector":`},
		"object kind differs":    {`"kind":"RequestAuthentication","metadata"`, `"kind":"AuthorizationPolicy","metadata"`},
		"a Pod with a bad label": {`"metadata":{"name":"p"`, `"metadata":{"labels":{"a":1},"name":"p"`},
	} {
		body := valid
		if strings.HasPrefix(name, "a Pod") {
			body = pod
		}
		if !strings.Contains(body, edit[0]) {
			t.Fatalf("%s: %q not in the review", name, edit[0])
		}
		corpus[name] = strings.Replace(body, edit[0], edit[1], 1)
	}
	// What the API server never sends but meshguard can read is judged as any review: a
	// verdict given to a caller other than the API server changes nothing in the cluster.
	judged := map[string]bool{"a long name": true, "v1beta1 review": true, "spec null": true, "a BOM": true, "object kind differs": true}
	if len(corpus) < 50 {
		t.Fatalf("a corpus of %d cases", len(corpus))
	}
	for name, body := range corpus {
		for _, path := range []string{ValidatePath, MutatePath} {
			code, out := send(t, ts.URL+path, []byte(body))
			if code >= 500 {
				t.Errorf("%s, %s: HTTP %d %.200s", name, path, code, out)
				continue
			}
			if code != http.StatusOK {
				continue // refused by the limits, before review
			}
			var ar admissionv1.AdmissionReview
			if err := json.Unmarshal(out, &ar); err != nil || ar.Response == nil {
				t.Errorf("%s, %s: not an AdmissionReview: %.200s", name, path, out)
				continue
			}
			if path == ValidatePath && ar.Response.Allowed && !judged[name] {
				t.Errorf("%s: allowed", name)
			}
		}
	}
	if code, out := send(t, ts.URL+ValidatePath, []byte(valid)); code != http.StatusOK || !bytes.Contains(out, []byte(`"allowed":true`)) {
		t.Errorf("after the corpus, a valid review: HTTP %d %.300s", code, out)
	}
}
