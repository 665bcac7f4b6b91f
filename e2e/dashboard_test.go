package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// The dashboard tests drive a real headless Chromium (Debian's chromium
// package) against a live sluice: the page at GET / on the admin listener,
// fed by GET /stats. They skip when Chromium is missing, and fail then
// under CI=true (.ci/run installs it). Screenshots go to the test's
// artifact directory (go test -artifacts keeps them; see -outputdir).

// dashChromium returns the Chromium executable, or "".
func dashChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// dashBrowser is one tab of a headless Chromium, with what the page wrote
// to its console and every URL it requested.
type dashBrowser struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	console  []dashConsoleLine
	requests []string
}

type dashConsoleLine struct {
	kind, source, url, text string
}

func (l dashConsoleLine) String() string {
	return fmt.Sprintf("%s (%s) %s: %s", l.kind, l.source, l.url, l.text)
}

// newDashBrowser starts headless Chromium with a width x height window; the
// browser is closed when the test ends.
func newDashBrowser(t *testing.T, width, height int) *dashBrowser {
	t.Helper()
	path := dashChromium()
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed, and CI=true: .ci/run installs it with apt-get install chromium")
		}
		t.Skip("chromium is not installed (apt-get install chromium): skipping the dashboard's browser test")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height),
		chromedp.DisableGPU,
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("no-proxy-server", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	p := &dashBrowser{t: t, ctx: ctx}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		chromedp.Cancel(cctx)
		ccancel()
		cancel()
		acancel()
	})
	// The first run starts the browser; it must not have a timeout (see
	// chromedp.Run).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium (%s): %v", path, err)
	}
	if err := chromedp.Listen(ctx, p.record); err != nil {
		t.Fatal(err)
	}
	return p
}

// record keeps the console's errors and warnings, the page's exceptions
// and the URLs it requests. It runs on chromedp's reading goroutine, so it
// only appends.
func (p *dashBrowser) record(ev any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, strings.Trim(string(a.Value), `"`)+a.Description)
			}
			p.console = append(p.console, dashConsoleLine{string(ev.Type), "console", "", strings.Join(parts, " ")})
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil {
			text += " " + d.Exception.Description
		}
		p.console = append(p.console, dashConsoleLine{"exception", "javascript", d.URL, text})
	case *log.EventEntryAdded:
		e := ev.Entry
		if e.Level == log.EntryLevelError || e.Level == log.EntryLevelWarning {
			p.console = append(p.console, dashConsoleLine{string(e.Level), string(e.Source), e.URL, e.Text})
		}
	case *network.EventRequestWillBeSent:
		p.requests = append(p.requests, ev.Request.URL)
	}
}

// run runs actions with a time limit.
func (p *dashBrowser) run(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("browser: %v", err)
	}
}

// dashEval evaluates a JavaScript expression in the page.
func dashEval[T any](p *dashBrowser, js string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		p.t.Fatalf("evaluating %s: %v", js, err)
	}
	return v
}

// waitFor polls a JavaScript condition in the page until it is true.
func (p *dashBrowser) waitFor(timeout time.Duration, js, what string) {
	p.t.Helper()
	if !poll(timeout, func() bool { return dashEval[bool](p, js) }) {
		p.t.Fatalf("the page did not show %s within %v\npage text:\n%s", what, timeout, dashEval[string](p, "document.body.innerText"))
	}
}

// screenshot saves the whole page as a PNG in the test's artifact
// directory and returns its path.
func (p *dashBrowser) screenshot(name string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(p.t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot: %s", path)
	return path
}

// checkConsole fails the test for any error or warning on the console,
// except those allowed says may be there.
func (p *dashBrowser) checkConsole(allowed func(dashConsoleLine) bool) {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.console {
		if allowed == nil || !allowed(l) {
			p.t.Errorf("browser console: %s", l)
		}
	}
}

// checkRequests fails the test unless every URL the page requested is on
// the admin listener (or a data: URL, which loads nothing).
func (p *dashBrowser) checkRequests(admin string) {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.requests) == 0 {
		p.t.Error("no request of the page was seen")
	}
	for _, raw := range p.requests {
		if strings.HasPrefix(raw, "data:") {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "http" || u.Host != admin {
			p.t.Errorf("the page requested %q: not on the admin listener %s", raw, admin)
		}
	}
}

// dashStateJS is JavaScript for the state text of backend u in route r.
func dashStateJS(r, u string) string {
	return fmt.Sprintf(`(() => { const s = document.querySelector('section[data-route=%q]'); if (!s) return '';
		const row = [...s.querySelectorAll('tr[data-backend]')].find(tr => tr.dataset.backend === %q);
		return row ? row.querySelector('.state').textContent : ''; })()`, r, u)
}

// dashFigureJS is JavaScript for the text of route r's figure f.
func dashFigureJS(r, f string) string {
	return fmt.Sprintf(`(() => { const d = document.querySelector('section[data-route=%q] dd[data-figure=%q]'); return d ? d.textContent : ''; })()`, r, f)
}

// dashTraffic sends n GETs to each path over one keep-alive client.
func dashTraffic(t *testing.T, p *proc, n int, paths ...string) {
	t.Helper()
	c, _ := newClient(t)
	for range n {
		for _, path := range paths {
			resp, err := c.Get(p.URL(path))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
}

// TestDashboard opens the dashboard of a sluice with two routes and three
// backends: it lists every route and backend with its state and labelled
// figures, updates in place at least every 2 s without reloading itself,
// shows a backend whose active checks start failing as unhealthy within
// 3 s of /backends saying so, writes no error to the console, and loads
// nothing from another host.
func TestDashboard(t *testing.T) {
	var sick atomic.Bool
	health := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/health" && sick.Load() && name == "api-2" {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, name)
		}
	}
	api1, api2, static1 := newBackend(t, "api-1", health("api-1")), newBackend(t, "api-2", health("api-2")), newBackend(t, "static-1", health("static-1"))
	p := start(t, `
health:
  active:
    path: /health
    interval: 200ms
    timeout: 150ms
    healthy_threshold: 1
    unhealthy_threshold: 1
routes:
  - name: api
    path_prefix: /api
    backends: [`+api1.URL+`, `+api2.URL+`]
  - name: static
    path_prefix: /static
    host: static.example
    backends: [`+static1.URL+`]
`)
	dashTraffic(t, p, 20, "/api/users")

	b := newDashBrowser(t, 1400, 900)
	b.run(chromedp.Navigate(p.AdminURL("/")))
	for _, r := range [][2]string{{"api", api1.URL}, {"api", api2.URL}, {"static", static1.URL}} {
		b.waitFor(5*time.Second, dashStateJS(r[0], r[1])+` === "healthy"`, fmt.Sprintf("backend %s of route %s as healthy", r[1], r[0]))
	}
	b.waitFor(5*time.Second, dashFigureJS("api", "requests_per_second")+` !== "–" && parseFloat(`+dashFigureJS("api", "requests_per_second")+`) > 0`,
		"route api's requests per second")

	// The figures are labelled, on the route and in the backends' table.
	text := dashEval[string](b, "document.body.innerText")
	for _, label := range []string{"Requests/s", "Error rate", "p50", "p99", "Retries", "Ejections", "In flight",
		"Connections open", "Uptime", "Last reload", "Recent health transitions", "/api", "static.example"} {
		if !strings.Contains(text, label) {
			t.Errorf("the page does not show %q:\n%s", label, text)
		}
	}
	heads := dashEval[[]string](b, `[...document.querySelectorAll('section[data-route="api"] thead th')].map(th => th.textContent)`)
	for _, want := range []string{"Backend", "State", "Requests/s", "Error rate", "p50", "p99", "Retries", "Ejections", "In flight"} {
		if !strings.Contains(strings.Join(heads, "|"), want) {
			t.Errorf("the backends' table has the columns %q, without %q", heads, want)
		}
	}
	for _, f := range []string{"p50_ms", "p99_ms"} {
		if v := dashEval[string](b, dashFigureJS("api", f)); !strings.HasSuffix(v, "ms") && !strings.HasSuffix(v, " s") {
			t.Errorf("route api's %s shows %q, want a latency", f, v)
		}
	}

	// In place: a marker set in the page survives while the figures
	// change, and updates come at least every 2 s.
	b.run(chromedp.Evaluate[chromedp.Void](`window.sluiceTestMarker = "still here"`))
	live := func() string { return dashEval[string](b, `document.getElementById("live").textContent`) }
	last, changes := live(), 0
	since := time.Now()
	for changes < 3 {
		if !poll(2500*time.Millisecond, func() bool { return live() != last }) {
			t.Fatalf("the page did not update within 2.5 s of %v (its status says %q)", since, last)
		}
		last, changes, since = live(), changes+1, time.Now()
	}
	before := dashEval[string](b, dashFigureJS("api", "requests_per_second"))
	dashTraffic(t, p, 40, "/api/users")
	// The rate alone drifts as the window grows; the window's count (in
	// the error rate's title, "E of N requests") must take in all 60.
	b.waitFor(5*time.Second, fmt.Sprintf(`%s !== %q && parseInt((document.querySelector('section[data-route="api"] dd[data-figure="error_rate"]').parentElement.title.split(" of ")[1] || "").replace(/,/g, "")) >= 60`,
		dashFigureJS("api", "requests_per_second"), before), "route api's requests per second change with traffic")

	// A backend whose active checks fail: the page says so within 3 s of
	// /backends.
	sick.Store(true)
	_, seen := waitState(t, p, "api", api2.URL, "unhealthy", 10*time.Second)
	b.waitFor(3*time.Second, dashStateJS("api", api2.URL)+` === "unhealthy"`, "api-2 as unhealthy")
	t.Logf("the page showed api-2 unhealthy %v after /backends did", time.Since(seen).Round(time.Millisecond))
	b.waitFor(3*time.Second, `document.getElementById("tr-body").innerText.includes("unhealthy")`, "the transition in the recent transitions")
	if got := dashEval[string](b, dashStateJS("api", api1.URL)); got != "healthy" {
		t.Errorf("api-1 shows %q, want healthy", got)
	}
	if m := dashEval[string](b, `String(window.sluiceTestMarker)`); m != "still here" {
		t.Errorf("the page's marker is %q: the page reloaded", m)
	}
	if n := dashEval[int](b, `performance.getEntriesByType("navigation").length`); n != 1 {
		t.Errorf("%d navigations, want 1", n)
	}

	b.screenshot("dashboard.png")
	b.run(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	b.waitFor(3*time.Second, `document.documentElement.scrollWidth <= window.innerWidth + 1`, "a page that fits a phone's width")
	b.screenshot("dashboard-phone.png")

	b.checkConsole(nil)
	b.checkRequests(p.Admin)
}

// TestDashboardToken: with admin.token set, the page loads without the
// token and holds no route or backend data; it asks for the token, shows
// a clear message when it is wrong, shows the data once it is right, and
// keeps it for the tab, so that a reload does not ask again.
func TestDashboardToken(t *testing.T) {
	const token = "dash-s3cret"
	be := newBackend(t, "secure-1", nil)
	p := start(t, `
admin:
  listen: "{{admin}}"
  token: "`+token+`"
routes:
  - name: secure-api
    path_prefix: /api
    backends: [`+be.URL+`]
`)
	resp, page := get(t, p.AdminURL("/"))
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / without the token = %d %s, want 200 HTML", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, secret := range []string{"secure-api", be.URL, token} {
		if strings.Contains(string(page), secret) {
			t.Errorf("the page served without a token holds %q", secret)
		}
	}
	for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong"}} {
		if resp, _ := get(t, p.AdminURL("/stats"), hdr...); resp.StatusCode != 401 {
			t.Errorf("GET /stats with %v = %d, want 401", hdr, resp.StatusCode)
		}
	}
	if resp, _ := get(t, p.AdminURL("/stats"), "Authorization", "Bearer "+token); resp.StatusCode != 200 {
		t.Errorf("GET /stats with the token = %d, want 200", resp.StatusCode)
	}

	b := newDashBrowser(t, 1280, 800)
	b.run(chromedp.Navigate(p.AdminURL("/")))
	b.run(chromedp.WaitVisible(chromedp.ID("token")))
	noData := func(when string) {
		text := dashEval[string](b, "document.documentElement.outerHTML")
		for _, secret := range []string{"secure-api", be.URL} {
			if strings.Contains(text, secret) {
				t.Errorf("%s, the page holds %q", when, secret)
			}
		}
	}
	noData("before a token")
	if visible := dashEval[bool](b, `document.getElementById("auth-error").offsetParent !== null`); visible {
		t.Error("the page shows an error before any token was entered")
	}

	b.run(chromedp.SendKeys(chromedp.ID("token"), "not-the-token"), chromedp.Click(chromedp.CSS(`#auth-form button[type="submit"]`)))
	b.waitFor(5*time.Second, `(() => { const e = document.getElementById("auth-error"); return e.offsetParent !== null && e.textContent.includes("not accepted"); })()`,
		"a visible message that the token was wrong")
	noData("with a wrong token")

	b.run(chromedp.SendKeys(chromedp.ID("token"), token), chromedp.Click(chromedp.CSS(`#auth-form button[type="submit"]`)))
	b.waitFor(5*time.Second, dashStateJS("secure-api", be.URL)+` === "healthy"`, "the route's backend once the token is right")
	if visible := dashEval[bool](b, `document.getElementById("auth").offsetParent !== null`); visible {
		t.Error("the token form is still shown with the data")
	}

	// The token is kept for the tab: a reload shows the data, asking nothing.
	b.run(chromedp.Reload())
	b.waitFor(5*time.Second, dashStateJS("secure-api", be.URL)+` === "healthy"`, "the data again after a reload")
	if visible := dashEval[bool](b, `document.getElementById("auth").offsetParent !== null`); visible {
		t.Error("after a reload the page asks for the token again")
	}
	b.screenshot("dashboard-token.png")

	// The 401 answers to /stats are expected; Chromium reports failed
	// loads on the console itself.
	b.checkConsole(func(l dashConsoleLine) bool {
		return l.source == "network" && strings.HasSuffix(l.url, "/stats") && strings.Contains(l.text, "401")
	})
	b.checkRequests(p.Admin)
}

// TestDashboardDemo runs "sluice -demo" under some traffic, checks that its
// output names the dashboard, and takes a screenshot of the dashboard
// (docs/dashboard.png is one; SLUICE_DASHBOARD_SCREENSHOT=path writes it
// there too). It binds the demo's fixed ports, so it skips when they are
// busy; it is not parallel, so that TestDemo does not race it for them.
func TestDashboardDemo(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:8080", "127.0.0.1:8443", "127.0.0.1:9901"} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Skipf("%s is busy: %v", addr, err)
		}
		l.Close()
	}
	b := newDashBrowser(t, 1400, 1000)
	p := launch(t, "-demo")
	p.Addr, p.Admin = "127.0.0.1:8080", "127.0.0.1:9901"
	if err := p.waitReady(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool { return strings.Contains(p.stdout.String(), "Dashboard: open http://127.0.0.1:9901/") },
		"the demo's output names the dashboard:\n%s", p.stdout.String())

	// Traffic: 60 to 180 requests a second, changing every 2 s, for at
	// most 20 s (100 s for the README's screenshot, whose sparklines fill
	// most of their minute), stopped when the screenshot is taken.
	out := os.Getenv("SLUICE_DASHBOARD_SCREENSHOT")
	length, points := 20*time.Second, 8
	if out != "" {
		length, points = 100*time.Second, 50
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		c := &http.Client{Timeout: 5 * time.Second}
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		deadline := time.After(length)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-deadline:
				return
			case <-tick.C:
			}
			for range 1 + i/40%3 {
				for _, path := range []string{"/api/users/" + strconv.Itoa(i), "/api/orders", "/static/logo.png"} {
					if resp, err := c.Get(p.URL(path)); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}
			}
		}
	})
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
	})

	b.run(chromedp.Navigate(p.AdminURL("/")))
	b.waitFor(10*time.Second, dashFigureJS("api", "requests_per_second")+` !== "–" && parseFloat(`+dashFigureJS("api", "requests_per_second")+`) > 1`,
		"route api under traffic")
	// Enough seconds for the sparklines to draw a line.
	b.waitFor(length, fmt.Sprintf(`(() => { const l = document.querySelector('section[data-route="api"] tbody .spark polyline'); return !!l && l.getAttribute("points").split(" ").length >= %d; })()`, points),
		"sparklines of several seconds")
	path := b.screenshot("dashboard-demo.png")
	if out != "" {
		png, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b.checkConsole(nil)
	b.checkRequests(p.Admin)
}
