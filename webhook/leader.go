package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Leader elects, among meshguard's replicas, the one that judges every security policy
// write that may open (policy.MayOpen). It knows each such write allowed, as its own
// pending writes, until its cache shows it: it needs no read of the API server to see
// another replica's, and two writes that together would open a workload are judged one
// after the other wherever they arrive. The other replicas forward those reviews to it,
// over HTTPS pinned to the serving certificate they share; where it cannot be reached, or
// no replica leads, they refuse them, to be retried (route). A new leader judges with
// consistent reads (consistentReads) for its first leaderSettle.
//
// A nil *Leader leads nothing: every replica judges with consistent reads.
type Leader struct {
	// Lease is held by the leader; its identity is the replica's address, as its peers
	// reach it (https://host:port): a replica restarted at the same address takes the
	// Lease back at once.
	Lease *resourcelock.LeaseLock
	// CertFile is the serving certificate: a peer must present one with the same key.
	CertFile string
	// Synced tells when the replica judges (its caches synced): it stands for the Lease
	// only from then on.
	Synced func() bool
	Log    logr.Logger

	// leadingSince is when this replica started leading; nil while it does not.
	leadingSince atomic.Pointer[time.Time]
	// current is the address of the replica that leads, as the Lease last said.
	current atomic.Pointer[string]
	client  atomic.Pointer[http.Client]
}

// leaderSettle is how long a new leader still judges with consistent reads: the writes the
// replica that led before allowed in its last moments may not be in its cache yet. A
// leader that lost the Lease stops judging as leader at RenewDeadline, 5 s before another
// can take it (LeaseDuration); a released Lease is taken at once, hence the wait.
const leaderSettle = 5 * time.Second

// forwardTimeout bounds a forwarded review, inside the security webhooks' 5 s.
const forwardTimeout = 2 * time.Second

// forwardedHeader marks a review forwarded by a replica to the leader: a replica that no
// longer leads refuses it rather than forward it again.
const forwardedHeader = "Meshguard-Forwarded"

// NeedLeaderElection is false: the Leader elects itself, and every replica serves.
func (l *Leader) NeedLeaderElection() bool { return false }

// Start stands for the Lease, once the replica is ready, until ctx ends.
func (l *Leader) Start(ctx context.Context) error {
	l.client.Store(l.peerClient())
	for l.Synced != nil && !l.Synced() {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
	for ctx.Err() == nil {
		elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: l.Lease, LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
			ReleaseOnCancel: true, Name: l.Lease.LeaseMeta.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					now := time.Now()
					l.leadingSince.Store(&now)
					l.Log.Info("leading: judging the writes that may open", "address", l.Lease.Identity())
					<-ctx.Done()
				},
				OnStoppedLeading: func() {
					l.leadingSince.Store(nil)
					l.Log.Info("not leading: forwarding the writes that may open", "address", l.Lease.Identity())
				},
				OnNewLeader: func(identity string) { l.current.Store(&identity) },
			},
		})
		if err != nil {
			return err
		}
		elector.Run(ctx) // until the Lease is lost, or ctx ends; then stand again
	}
	return nil
}

// peerClient is the HTTPS client of the other replicas, pinned to the serving key:
// certificate verification is done by pinned alone.
func (l *Leader) peerClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true, VerifyPeerCertificate: l.pinned,
			// The leader takes reviews from the API server and its peers only.
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return servingCertificate(l.CertFile) }},
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     time.Minute,
	}}
}

// settled tells whether this replica leads, and has long enough to judge on its cache.
func (l *Leader) settled() bool {
	if l == nil {
		return false
	}
	since := l.leadingSince.Load()
	return since != nil && time.Since(*since) >= leaderSettle
}

// leaderQuiet is how long a new leader refuses the writes that may open (retry): those the
// replica that led before allowed in its last moments reach etcd meanwhile, before its
// first consistent read.
const leaderQuiet = time.Second

// route tells where a write that may open is judged: here (""), at the address of the
// replica that leads, or nowhere for now (an error that says why: the write is refused,
// to be retried). Only the leader judges them, so that no two replicas allow two writes
// that together open a workload; a nil Leader judges here.
func (l *Leader) route(forwarded bool) (address string, err error) {
	if l == nil {
		return "", nil
	}
	if since := l.leadingSince.Load(); since != nil {
		if time.Since(*since) < leaderQuiet {
			return "", errors.New("this replica has just started judging the changes that may open a workload")
		}
		return "", nil
	}
	if forwarded {
		return "", errors.New("the replica this change was forwarded to no longer judges the changes that may open a workload")
	}
	if current := l.current.Load(); current != nil && *current != "" && *current != l.Lease.Identity() && l.client.Load() != nil {
		return *current, nil
	}
	return "", errors.New("no replica judges the changes that may open a workload yet")
}

// forward has the replica at address judge a review, and returns its answer.
func (l *Leader) forward(ctx context.Context, address string, req admission.Request) (admission.Response, error) {
	review := admissionv1.AdmissionReview{Request: &req.AdmissionRequest}
	review.SetGroupVersionKind(reviewKind)
	body, err := json.Marshal(review)
	if err != nil {
		return admission.Response{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, forwardTimeout)
	defer cancel()
	post, err := http.NewRequestWithContext(ctx, http.MethodPost, address+ValidatePath, bytes.NewReader(body))
	if err != nil {
		return admission.Response{}, err
	}
	post.Header.Set("Content-Type", "application/json")
	post.Header.Set(forwardedHeader, l.Lease.Identity())
	resp, err := l.client.Load().Do(post)
	if err != nil {
		return admission.Response{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return admission.Response{}, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var out admissionv1.AdmissionReview
	if err := jsonv2.UnmarshalRead(io.LimitReader(resp.Body, maxReviewBody), &out); err != nil {
		return admission.Response{}, err
	}
	if out.Response == nil || out.Response.UID != req.UID {
		return admission.Response{}, errors.New("the answer is not to this review")
	}
	if out.Response.Result != nil && out.Response.Result.Code >= http.StatusInternalServerError {
		// The leader could not judge it (out of time, a read failed): judged here instead.
		return admission.Response{}, fmt.Errorf("the leader answered %d: %s", out.Response.Result.Code, out.Response.Result.Message)
	}
	return admission.Response{AdmissionResponse: *out.Response}, nil
}

// pinned accepts a peer that presents the serving certificate's key: the replicas share
// it, and nothing else holds it.
func (l *Leader) pinned(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	if len(rawCerts) == 0 {
		return errors.New("the peer presented no certificate")
	}
	return ownKey(l.CertFile, rawCerts[0])
}

// forwardedKey marks, in a review's context, that another replica forwarded it.
type forwardedKey struct{}

func withForwarded(ctx context.Context, r *http.Request) context.Context {
	if r.Header.Get(forwardedHeader) == "" {
		return ctx
	}
	return context.WithValue(ctx, forwardedKey{}, true)
}

func forwarded(ctx context.Context) bool { v, _ := ctx.Value(forwardedKey{}).(bool); return v }
