# meshguard — the two commands of the README are `make run` and `make test`.
# Both build what they need themselves, kube-apiserver and etcd included (cached).

GO              ?= go
STATICCHECK     := honnef.co/go/tools/cmd/staticcheck@v0.8.2
CONTROLLER_GEN  := sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0
ACTIONLINT      := github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
VERSION         ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
FUZZTIME        ?= 30s
BIN             := bin/meshguard

# meshguard is pure Go. With cgo, the linker keeps every method of every type once the
# plugin package is linked (kustomize's library links it): a binary twice the size, and
# 35 MiB more resident at every start of check.
export CGO_ENABLED ?= 0

.PHONY: all build run test conformance unit e2e control-plane cert-manager lint fuzz bench load load-growth load-check load-apiserver load-writes docs generate image clean

all: build

build: ## Build bin/meshguard
	$(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN) ./cmd/meshguard

test: lint control-plane cert-manager ## Everything CI runs: lint, unit and end-to-end tests, fuzz seed corpora, access maps rendered
	KUBEBUILDER_ASSETS=$$(hack/control-plane-bins.sh) MESHGUARD_MERMAID_JS=$$(hack/render-tools.sh) $(GO) test -count=1 -timeout 20m ./...

conformance: ## meshguard's verdicts against what istiod generates (test/conformance, a module of its own); ends with one line: conformance: N cases, D divergences
	@mkdir -p bin && cd test/conformance && $(GO) vet ./... && \
	  { $(GO) test -count=1 -timeout 30m -v ./... > ../../bin/conformance.log 2>&1; status=$$?; \
	    if [ $$status -ne 0 ]; then grep -v -e '^=== RUN' -e '^--- PASS' -e '^conformance:' ../../bin/conformance.log | tail -n 80; fi; \
	    grep '^conformance:' ../../bin/conformance.log || echo 'conformance: 0 cases, the suite did not finish (bin/conformance.log)'; \
	    exit $$status; }

unit: ## Unit tests, golden fixtures, seed verdicts and fuzz seed corpora (no control plane)
	MESHGUARD_MERMAID_JS=$$(hack/render-tools.sh) $(GO) test -count=1 $$($(GO) list ./... | grep -v -e /test/e2e -e /test/certmanager)

e2e: control-plane cert-manager ## The end-to-end suites: real kube-apiserver, etcd, Istio CRDs, cert-manager and kubectl
	KUBEBUILDER_ASSETS=$$(hack/control-plane-bins.sh) $(GO) test -count=1 -v ./test/e2e ./test/certmanager

run: control-plane ## A local control plane with meshguard enforcing; Ctrl-C stops it all
	@$(GO) build -o bin/meshguard-local ./test/cluster/run && exec bin/meshguard-local

control-plane: ## Build (once, cached by version) kube-apiserver and etcd from the Go module proxy
	@hack/control-plane-bins.sh >/dev/null

cert-manager: ## Build (once, cached) cert-manager's controller and cainjector for the install test
	@hack/cert-manager-bins.sh >/dev/null

lint: ## gofmt, go vet, staticcheck and actionlint
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	cd hack/cert-manager && $(GO) vet ./...
	$(GO) run $(ACTIONLINT)

fuzz: ## Run every fuzz target for FUZZTIME each
	$(GO) test ./check -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime $(FUZZTIME)
	$(GO) test ./policy -run '^$$' -fuzz '^FuzzInspectJWKS$$' -fuzztime $(FUZZTIME)
	$(GO) test ./policy -run '^$$' -fuzz '^FuzzPrincipalProblem$$' -fuzztime $(FUZZTIME)
	$(GO) test ./webhook -run '^$$' -fuzz '^FuzzAdmissionReview$$' -fuzztime $(FUZZTIME)
	$(GO) test ./kinds -run '^$$' -fuzz '^FuzzIstioSpec$$' -fuzztime $(FUZZTIME)

bench: ## Go benchmarks of the hot paths (figures and method in docs/performance.md)
	$(GO) test ./check ./webhook ./audit ./policy ./test/bench -run '^$$' -bench . -benchmem -count 5

load: ## The load generator: meshguard vs a null handler over HTTPS at 1k, 10k and 100k Pods
	$(GO) run ./test/bench -pods 1000,10000,100000 -conns 64

load-growth: ## How the p99 grows from 1k to 100k Pods: one server process per size, load alternated
	$(GO) run ./test/bench -growth -pods 1000,10000,100000 -conns 64

load-check: ## meshguard check -o json as a process over 1k, 10k and 100k objects: median wall, peak RSS (GNU time)
	$(GO) run ./test/bench -check 1000,10000,100000 -runs 7

load-apiserver: control-plane ## RequestAuthentication creates through kube-apiserver, with and without meshguard
	KUBEBUILDER_ASSETS=$$(hack/control-plane-bins.sh) $(GO) run ./test/bench -apiserver 500 -rounds 3

load-writes: control-plane ## Policy writes through kube-apiserver: kubectl apply of 200 policies with and without meshguard, 32 applies at once, reviews posted to its URL
	KUBEBUILDER_ASSETS=$$(hack/control-plane-bins.sh) $(GO) run ./test/bench -writes 200 -rounds 3 -phase 2s

docs: ## Rewrite the fixtures' `# expect:` lines from what the engine finds (review the diff), then docs/rules.md
	$(GO) test ./policy -run '^TestGolden$$' -update
	$(GO) test ./policy -run '^TestRuleDocs$$' -update

generate: ## Regenerate deepcopy code and the MeshGuardrail CRD (manifests and chart) from api/
	$(GO) run $(CONTROLLER_GEN) object paths=./api/... crd paths=./api/... output:crd:dir=manifests/crd
	cp manifests/crd/meshguard.io_meshguardrails.yaml manifests/helm/meshguard/crds/

image: ## Build the image (linux/amd64, linux/arm64) into the OCI layout bin/image, SBOMs beside it; no container engine
	$(GO) run ./hack/image build -o bin/image -version $(VERSION)

clean:
	rm -rf bin .run
