# Static binary on distroless, as a non-root user with no shell.
FROM golang:1.26.8 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/meshguard ./cmd/meshguard

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/meshguard /meshguard
USER 65532:65532
ENTRYPOINT ["/meshguard"]
