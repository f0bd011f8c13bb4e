# For those who build with Docker: the same files `make image` puts in its image (written by
# hack/image, which needs no container engine), on scratch, run as the nonroot user with no
# shell. test/image compares the two. The build stage runs on the builder's platform and
# cross-compiles for the target's (docker buildx build --platform linux/amd64,linux/arm64).
FROM --platform=$BUILDPLATFORM golang:1.26.8 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETPLATFORM=linux/amd64
RUN go run ./hack/image rootfs -version "${VERSION}" -platform "${TARGETPLATFORM}" /rootfs

FROM scratch
COPY --from=build /rootfs/ /
COPY --from=build --chown=65532:65532 /rootfs/home/nonroot /home/nonroot
USER 65532:65532
ENTRYPOINT ["/meshguard"]
