// Package e2e drives the sluice binary over real sockets. Every test starts its
// own sluice process with a config written to t.TempDir() and talks to it with
// net/http clients or raw TCP connections; backends are real httptest servers.
// The tests are written from the user-facing contract (docs/configuration.md says it for users), not from the implementation.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// sluiceBin is the binary built once by TestMain.
var sluiceBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sluiceBin = filepath.Join(dir, "sluice")
	root, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	build := exec.Command("go", "build", "-o", sluiceBin, "github.com/sluice-proxy/sluice/cmd/sluice")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building sluice: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: goroutine leak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// ---------------------------------------------------------------------------
// Polling.

// eventually polls cond every 10ms until it returns true or timeout passes, in
// which case the test fails with msg.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	if !poll(timeout, cond) {
		t.Fatalf("condition not met within %v: "+msg, append([]any{timeout}, args...)...)
	}
}

// poll is eventually without failing: it reports whether cond became true.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitChan waits for ch to be closed or to deliver a value, failing the test
// after timeout instead of hanging.
func waitChan[T any](t testing.TB, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
	var zero T
	return zero
}

// ---------------------------------------------------------------------------
// Ports.

// freeAddr returns a 127.0.0.1 address that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	return freeAddrs(t, 1)[0]
}

// freeAddrs returns n distinct free loopback addresses: their listeners are
// all open at once before they close, so the kernel cannot hand out the
// same port twice.
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		addrs[i] = l.Addr().String()
	}
	return addrs
}

// refusedURL returns an http URL on a port where nothing listens.
func refusedURL(t testing.TB) string {
	return "http://" + freeAddr(t)
}

// ---------------------------------------------------------------------------
// The sluice process.

// syncBuffer is a bytes.Buffer safe for the process's writer goroutine and the
// test reading it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type proc struct {
	t       testing.TB
	cmd     *exec.Cmd
	Addr    string // proxy listener, host:port
	Admin   string // admin listener, host:port
	CfgPath string
	stdout  *syncBuffer
	stderr  *syncBuffer
	done    chan struct{} // closed when the process has exited
	code    int           // exit code, valid after done
}

// URL returns the proxy URL for path.
func (p *proc) URL(path string) string { return "http://" + p.Addr + path }

// AdminURL returns the admin URL for path.
func (p *proc) AdminURL(path string) string { return "http://" + p.Admin + path }

// Stderr returns what the process wrote to stderr so far.
func (p *proc) Stderr() string { return p.stderr.String() }

// Exited reports whether the process has exited.
func (p *proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process.
func (p *proc) Signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// Wait waits up to timeout for the process to exit and returns its exit code;
// it fails the test if the process is still running then.
func (p *proc) Wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		p.t.Fatalf("sluice did not exit within %v\nstderr:\n%s", timeout, p.Stderr())
		return -1
	}
}

// Stop sends SIGTERM and returns the exit code.
func (p *proc) Stop(timeout time.Duration) int {
	p.t.Helper()
	p.Signal(syscall.SIGTERM)
	return p.Wait(timeout)
}

var topKey = func(k string) *regexp.Regexp { return regexp.MustCompile(`(?m)^` + k + `:`) }

// writeConfig writes a config file (see composeConfig) with fresh listen
// and admin addresses.
func writeConfig(t testing.TB, cfg string) (path, listen, admin string) {
	t.Helper()
	addrs := freeAddrs(t, 2)
	listen, admin = addrs[0], addrs[1]
	path = filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(path, []byte(composeConfig(cfg, listen, admin)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, listen, admin
}

// composeConfig adds listen, admin.listen, access_log "off" and disabled
// active health checks to cfg unless cfg sets those top-level keys itself.
// In cfg, {{listen}} and {{admin}} stand for the addresses.
func composeConfig(cfg, listen, admin string) string {
	var b strings.Builder
	if !topKey("listen").MatchString(cfg) {
		fmt.Fprintf(&b, "listen: %q\n", listen)
	}
	if !topKey("admin").MatchString(cfg) {
		fmt.Fprintf(&b, "admin:\n  listen: %q\n", admin)
	}
	if !topKey("access_log").MatchString(cfg) {
		b.WriteString("access_log: \"off\"\n")
	}
	if !topKey("health").MatchString(cfg) {
		b.WriteString("health:\n  active:\n    path: \"\"\n")
	}
	b.WriteString(strings.NewReplacer("{{listen}}", listen, "{{admin}}", admin).Replace(cfg))
	return b.String()
}

// Rewrite replaces the running process's config file with cfg (composed
// with the same listen and admin addresses).
func (p *proc) Rewrite(cfg string) {
	p.t.Helper()
	if err := os.WriteFile(p.CfgPath, []byte(composeConfig(cfg, p.Addr, p.Admin)), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// start writes cfg (see writeConfig) and starts sluice with -config, waiting
// until it is ready.
func start(t testing.TB, cfg string) *proc {
	t.Helper()
	return startArgs(t, cfg, func(path string) []string { return []string{"-config", path} })
}

// startArgs is start with the command-line arguments built by args.
func startArgs(t testing.TB, cfg string, args func(cfgPath string) []string) *proc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		path, listen, admin := writeConfig(t, cfg)
		p := launch(t, args(path)...)
		p.Addr, p.Admin, p.CfgPath = listen, admin, path
		err := p.waitReady()
		if err == nil {
			return p
		}
		// A port picked by freeAddr can be taken by a parallel test
		// before sluice binds it: try again with fresh ports.
		if attempt < 3 && p.Exited() && strings.Contains(p.Stderr(), "address already in use") {
			continue
		}
		t.Fatal(err)
	}
}

// launch starts the binary with args, without waiting for readiness. The
// process is killed at cleanup if still running, and its stderr is logged when
// the test failed.
func launch(t testing.TB, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(sluiceBin, args...)
	p.cmd.Stdout = p.stdout
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting sluice: %v", err)
	}
	go func() {
		p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.Exited() {
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				p.cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("sluice %v stderr:\n%s", args, p.Stderr())
		}
	})
	return p
}

// waitReady polls admin /readyz until it answers 200 and the proxy port
// accepts connections.
func (p *proc) waitReady() error {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if p.Exited() {
			return fmt.Errorf("sluice exited with code %d before becoming ready\nstderr:\n%s", p.code, p.Stderr())
		}
		if resp, err := c.Get(p.AdminURL("/readyz")); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				if conn, err := net.DialTimeout("tcp", p.Addr, time.Second); err == nil {
					conn.Close()
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sluice not ready within 15s\nstderr:\n%s", p.Stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Configs.

// simpleRoute is a config with one /api route to the given backends.
func simpleRoute(urls ...string) string {
	return fmt.Sprintf(`
routes:
  - name: api
    path_prefix: /api
    backends: [%s]
`, strings.Join(urls, ", "))
}

// peerRoute is one route of a test config: a name (also the path prefix), its
// backends, and extra YAML lines for the route (indented by four spaces).
type peerRoute struct {
	name     string
	backends []string
	extra    string
}

// peerRoutes renders routes as the routes: section of a config.
func peerRoutes(routes ...peerRoute) string {
	var b strings.Builder
	b.WriteString("routes:\n")
	for _, r := range routes {
		fmt.Fprintf(&b, "  - name: %s\n    path_prefix: /%s\n    backends: [%s]\n", r.name, r.name, strings.Join(r.backends, ", "))
		if r.extra != "" {
			b.WriteString(r.extra)
			if !strings.HasSuffix(r.extra, "\n") {
				b.WriteString("\n")
			}
		}
	}
	return b.String()
}

// ---------------------------------------------------------------------------
// Backends.

// seen is what a backend received.
type seen struct {
	Method     string
	RequestURI string // the request target exactly as received
	Path       string
	RawQuery   string
	Host       string
	Proto      string
	Header     http.Header
	Body       []byte
	Trailer    http.Header
	RemoteAddr string
}

// backend is an httptest server that records every request and whose
// listener records every byte it read.
type backend struct {
	*httptest.Server
	Name string

	mu   sync.Mutex
	reqs []seen
	raw  bytes.Buffer
}

// newBackend starts a recording backend that reads and records each request
// body before calling h. When h is nil it answers 200 with the body name and
// the header X-Backend: name.
func newBackend(t testing.TB, name string, h http.HandlerFunc) *backend {
	t.Helper()
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Backend", name)
			io.WriteString(w, name)
		}
	}
	return startBackend(t, name, true, h)
}

// newStreamBackend starts a recording backend whose handler reads the request
// body itself, as it arrives (the recorder does not read it first).
func newStreamBackend(t testing.TB, name string, h http.HandlerFunc) *backend {
	t.Helper()
	return startBackend(t, name, false, h)
}

func startBackend(t testing.TB, name string, readBody bool, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{Name: name}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seen{
			Method:     r.Method,
			RequestURI: r.RequestURI,
			Path:       r.URL.Path,
			RawQuery:   r.URL.RawQuery,
			Host:       r.Host,
			Proto:      r.Proto,
			Header:     r.Header.Clone(),
			RemoteAddr: r.RemoteAddr,
		}
		if readBody {
			body, _ := io.ReadAll(r.Body)
			s.Body = body
			s.Trailer = r.Trailer.Clone()
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		b.mu.Lock()
		b.reqs = append(b.reqs, s)
		b.mu.Unlock()
		h(w, r)
	}))
	b.Server.Listener = &tapListener{Listener: b.Server.Listener, b: b}
	b.Server.Start()
	t.Cleanup(b.Server.Close)
	return b
}

// Requests returns a copy of what the backend received so far.
func (b *backend) Requests() []seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]seen(nil), b.reqs...)
}

// Count returns the number of requests received.
func (b *backend) Count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.reqs)
}

// Last returns the last request received, failing the test if there is none.
func (b *backend) Last(t testing.TB) seen {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.reqs) == 0 {
		t.Fatalf("backend %s received no request", b.Name)
	}
	return b.reqs[len(b.reqs)-1]
}

// Raw returns every byte the backend's listener has read, over all connections.
func (b *backend) Raw() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.raw.String()
}

type tapListener struct {
	net.Listener
	b *backend
}

func (l *tapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tapConn{Conn: c, b: l.b}, nil
}

type tapConn struct {
	net.Conn
	b *backend
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.b.mu.Lock()
		c.b.raw.Write(p[:n])
		c.b.mu.Unlock()
	}
	return n, err
}

// rawBackend is a TCP server that reads one request per connection and
// answers with fixed bytes, then closes: for exact response bytes.
type rawBackend struct {
	net.Listener
	URL string
	mu  sync.Mutex
	got []*http.Request
}

func newRawBackend(t testing.TB, response string) *rawBackend {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rb := &rawBackend{Listener: l, URL: "http://" + l.Addr().String()}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				rb.mu.Lock()
				rb.got = append(rb.got, req)
				rb.mu.Unlock()
				io.WriteString(c, response)
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); wg.Wait() })
	return rb
}

func (rb *rawBackend) Count() int {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return len(rb.got)
}

// ---------------------------------------------------------------------------
// Clients.

// newClient returns a client with a fresh Transport, closed at cleanup.
func newClient(t testing.TB) (*http.Client, *http.Transport) {
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport: tr,
		Timeout:   10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, tr
}

// get does a GET with a fresh no-keep-alive client and returns the response
// and its body.
func get(t testing.TB, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	return do(t, "GET", url, "", hdr...)
}

// do sends method url with body and header pairs (name, value, ...).
func do(t testing.TB, method, url, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	c, tr := newClient(t)
	tr.DisableKeepAlives = true
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, b
}

// ---------------------------------------------------------------------------
// Assertions.

// checkProxyError asserts that resp is one of the proxy's own JSON errors:
// the status, Content-Type application/json, a body of exactly the keys
// error, message and request_id, the error word, a non-empty message, and a
// request_id equal to the X-Request-Id header.
func checkProxyError(t testing.TB, resp *http.Response, body []byte, status int, word string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status = %d, want %d; body %q", resp.StatusCode, status, body)
	}
	ct := resp.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %q", err, body)
	}
	if len(m) != 3 {
		t.Errorf("body keys = %v, want exactly error, message, request_id", keys(m))
	}
	if got, _ := m["error"].(string); got != word {
		t.Errorf("body error = %v, want %q", m["error"], word)
	}
	if msg, _ := m["message"].(string); msg == "" {
		t.Errorf("body message = %v, want a non-empty string", m["message"])
	}
	id, _ := m["request_id"].(string)
	if id == "" {
		t.Errorf("body request_id = %v, want a non-empty string", m["request_id"])
	}
	if h := resp.Header.Get("X-Request-Id"); h != id {
		t.Errorf("X-Request-Id header = %q, body request_id = %q; want equal", h, id)
	}
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// validRequestID reports whether id is 1-128 visible ASCII characters.
func validRequestID(id string) bool {
	if len(id) < 1 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}
