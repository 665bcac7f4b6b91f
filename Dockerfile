# sluice in a container: a static binary on a distroless base, run as a
# non-root user. See docs/deploy.md.
#
#   docker build -t sluice --build-arg VERSION=v1.0.0 .
#   docker run --rm -p 8080:8080 -p 127.0.0.1:9901:9901 --stop-timeout 45 \
#       -v "$PWD/sluice.yaml:/etc/sluice/sluice.yaml:ro" sluice
#
# The configuration must listen on all interfaces of the container
# (listen: ":8080", admin: { listen: ":9901" }), or nothing outside it can
# connect.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The version -version prints; a local build says "dev" without it.
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/sluice ./cmd/sluice

# distroless/static has CA certificates (for https:// backends) and time
# zone data, and no shell; its "nonroot" user is uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sluice /usr/local/bin/sluice
USER nonroot:nonroot
# The proxy listener and the admin listener of the configuration above.
EXPOSE 8080 9901
# SIGTERM drains (docker stop); SIGHUP reloads the mounted file
# (docker kill --signal HUP <container>).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sluice", "-config", "/etc/sluice/sluice.yaml"]
