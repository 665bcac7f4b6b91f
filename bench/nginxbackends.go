package main

// The nginx backends: with -backends nginx, the two healthy backends
// (ok1 and ok2) are two listeners of one nginx worker, pinned to the load
// CPU, that answer /api/users from its configuration (return 200) instead of
// the fasthttp backends. nginx is about as cheap a backend as exists, so the
// proxy under test meets the least jitter it can from behind; the other
// modes (fail, slow, flap) stay fasthttp, which is why the scenarios that
// need them, and those that need a count of what the healthy backends
// served, do not run in this mode.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"text/template"
	"time"
)

// backendKinds are the values of -backends.
var backendKinds = []string{"go", "nginx"}

// nginxBackendTemplate is the backends' nginx configuration: one worker,
// no access log, keep-alive without a request limit, and the endpoints the
// benchmark scenarios use, answered from memory.
var nginxBackendTemplate = template.Must(template.New("nginx-backends").Parse(`# nginx benchmark backends (generated)
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
pid {{.dir}}/nginx.pid;
error_log {{.log}} warn;

events {
    worker_connections 8192;
}

http {
    access_log off;
` + nginxTempPaths + `    keepalive_timeout 120s;
    keepalive_requests 1000000;
    server_tokens off;
{{range .ports}}
    server {
        listen 127.0.0.1:{{.}} backlog=4096;
        location = /api/users {
            default_type application/json;
            return 200 '{{$.users}}';
        }
        location = /health {
            return 200 'ok';
        }
        location / {
            return 404;
        }
    }
{{end}}
}
`))

// nginxBackends is the nginx process serving ok1 and ok2.
type nginxBackends struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// startNginxBackends starts nginx (bin) pinned with pin, listening on two
// free ports, with its files in dir and its error log at logFile, and waits
// until both answer /health.
func startNginxBackends(ctx context.Context, bin string, pin []string, dir, logFile string) (*nginxBackends, []string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	var ports []int
	for range 2 {
		p, err := freePort()
		if err != nil {
			return nil, nil, err
		}
		ports = append(ports, p)
	}
	var buf bytes.Buffer
	if err := nginxBackendTemplate.Execute(&buf, map[string]any{
		"dir": dir, "log": logFile, "ports": ports, "users": string(usersJSON),
	}); err != nil {
		return nil, nil, err
	}
	cfg := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cfg, buf.Bytes(), 0o644); err != nil {
		return nil, nil, err
	}
	argv := append(append([]string{}, pin...), bin, "-p", dir, "-c", cfg, "-e", logFile)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting nginx backends: %w", err)
	}
	nb := &nginxBackends{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(nb.exited) }()
	var addrs []string
	for _, p := range ports {
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		if err := waitStatus(ctx, "http://"+addr+"/health", 200, 10*time.Second, nb.exited); err != nil {
			nb.stop()
			return nil, nil, fmt.Errorf("nginx backend %s: %w\n%s", addr, err, tail(logFile, 20))
		}
		addrs = append(addrs, addr)
	}
	return nb, addrs, nil
}

// stop ends nginx: SIGQUIT asks it to finish gracefully, SIGKILL follows
// after five seconds.
func (nb *nginxBackends) stop() {
	_ = nb.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-nb.exited:
	case <-time.After(5 * time.Second):
		_ = nb.cmd.Process.Kill()
		<-nb.exited
	}
}
