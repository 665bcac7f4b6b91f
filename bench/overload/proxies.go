package main

// The proxies and their configurations: round robin over the two
// backends, upstream keep-alive, no access log, no health checks and no
// ejection, and a limit of requests in flight per backend: sluice
// circuit_breaker.max_requests_per_backend, nginx max_conns, HAProxy
// maxconn on each server. sluice-nocb is sluice without the limit, to
// show what it is for.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"text/template"
	"time"
)

// proxySpec is one proxy under test.
type proxySpec struct {
	name string
	bin  string
	tmpl *template.Template
	// argv returns the command line, given the config file and the
	// scratch directory.
	argv func(bin, cfg, dir string) []string
	env  []string
}

var sluiceTmpl = template.Must(template.New("sluice").Parse(`listen: "127.0.0.1:{{.port}}"
admin: {listen: "127.0.0.1:{{.adminPort}}"}
access_log: "off"
health:
  active: {path: ""}
  passive: {consecutive_failures: 1000000}
retry: {attempts: 1}
{{- if .limit}}
circuit_breaker: {max_requests_per_backend: {{.limit}}}
{{- end}}
routes:
  - name: bench
    path_prefix: /
    backends: [{{range $i, $u := .upstreams}}{{if $i}}, {{end}}http://{{$u}}{{end}}]
`))

var nginxTmpl = template.Must(template.New("nginx").Parse(`daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 65536;
pid {{.dir}}/nginx.pid;
error_log {{.dir}}/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path {{.dir}}/client_body;
    proxy_temp_path {{.dir}}/proxy;
    fastcgi_temp_path {{.dir}}/fastcgi;
    uwsgi_temp_path {{.dir}}/uwsgi;
    scgi_temp_path {{.dir}}/scgi;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    upstream backends {
{{- range .upstreams}}
        server {{.}} max_fails=0{{if $.limit}} max_conns={{$.limit}}{{end}};
{{- end}}
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:{{.port}} backlog=4096;
        location / {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream off;
        }
    }
}
`))

var haproxyTmpl = template.Must(template.New("haproxy").Parse(`global
    nbthread 1
    maxconn 4096
defaults
    mode http
    maxconn 4096
    option http-keep-alive
    http-reuse always
    timeout connect 3s
    timeout client 60s
    timeout server 30s
    timeout queue 30s
    timeout http-request 10s
    timeout http-keep-alive 60s
    retries 0
frontend bench
    bind 127.0.0.1:{{.port}}
    default_backend backends
backend backends
    balance roundrobin
{{- range $i, $u := .upstreams}}
    server s{{$i}} {{$u}}{{if $.limit}} maxconn {{$.limit}}{{end}}
{{- end}}
`))

// proxies returns the proxies named, those installed; the others are
// reported in skipped.
func proxies(names []string, sluiceBin string) (ps []proxySpec, skipped []string) {
	for _, n := range names {
		switch n {
		case "sluice", "sluice-nocb":
			ps = append(ps, proxySpec{name: n, bin: sluiceBin, tmpl: sluiceTmpl, env: []string{"GOMAXPROCS=1"},
				argv: func(bin, cfg, _ string) []string { return []string{bin, "-config", cfg} }})
		case "nginx", "haproxy":
			bin, err := exec.LookPath(n)
			if err != nil {
				skipped = append(skipped, n+" is not installed")
				continue
			}
			if n == "nginx" {
				ps = append(ps, proxySpec{name: n, bin: bin, tmpl: nginxTmpl,
					argv: func(bin, cfg, dir string) []string {
						return []string{bin, "-p", dir, "-c", cfg, "-e", filepath.Join(dir, "error.log")}
					}})
			} else {
				ps = append(ps, proxySpec{name: n, bin: bin, tmpl: haproxyTmpl,
					argv: func(bin, cfg, _ string) []string { return []string{bin, "-f", cfg, "-db"} }})
			}
		default:
			skipped = append(skipped, "unknown proxy "+n)
		}
	}
	return ps, skipped
}

// running is a started proxy.
type running struct {
	cmd    *exec.Cmd
	exited chan struct{}
	log    *bytes.Buffer
}

// start writes p's configuration into dir and starts it, pinned with pin,
// and waits until it answers GET /api/users with 200.
func start(ctx context.Context, p proxySpec, dir string, pin []string, port, adminPort, limit int, upstreams []string) (*running, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	os.Chmod(dir, 0o755) // nginx's worker may run as nobody
	var cfg bytes.Buffer
	if err := p.tmpl.Execute(&cfg, map[string]any{
		"dir": dir, "port": port, "adminPort": adminPort, "limit": limit, "upstreams": upstreams,
	}); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, p.name+".conf")
	if err := os.WriteFile(path, cfg.Bytes(), 0o644); err != nil {
		return nil, err
	}
	argv := append(append([]string{}, pin...), p.argv(p.bin, path, dir)...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), p.env...)
	r := &running{cmd: cmd, exited: make(chan struct{}), log: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = r.log, r.log
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { cmd.Wait(); close(r.exited) }()
	url := fmt.Sprintf("http://127.0.0.1:%d/api/users", port)
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for deadline := time.Now().Add(15 * time.Second); ; {
		if resp, err := c.Get(url); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return r, nil
			}
		}
		select {
		case <-r.exited:
			return nil, fmt.Errorf("%s exited before it was ready:\n%s", p.name, r.log)
		case <-ctx.Done():
			r.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("%s not ready within 15 s:\n%s", p.name, r.log)
		}
	}
}

// stop ends the proxy: SIGTERM, then SIGKILL after 10 s.
func (r *running) stop() {
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		r.cmd.Process.Kill()
		<-r.exited
	}
}
