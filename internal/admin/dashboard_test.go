package admin

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func serve(t *testing.T, opts Options) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(New(opts))
	t.Cleanup(srv.Close)
	return srv
}

func fetch(t *testing.T, url, token string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestDashboardReferencesNoOtherHost reads the page as served: it names
// no other host, loads no file (only the inline style and script, and a
// data: icon), and its script talks to /stats only, relatively.
func TestDashboardReferencesNoOtherHost(t *testing.T) {
	page := string(dashboardPage)
	if strings.Contains(page, "://") {
		i := strings.Index(page, "://")
		t.Errorf("the page holds an absolute URL near %q", page[max(0, i-40):min(len(page), i+40)])
	}
	for _, bad := range []string{"@import", "url(", "<iframe", "<object", "<embed", "<img", "WebSocket", "EventSource", "XMLHttpRequest", "import(", "srcset", "sendBeacon"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page uses %q", bad)
		}
	}
	attr := regexp.MustCompile(`(?i)\b(src|href|action|poster|data|formaction)\s*=\s*["']?([^"'\s>]*)`)
	for _, m := range attr.FindAllStringSubmatch(page, -1) {
		if m[2] != "data:," {
			t.Errorf("the page loads %s=%q; only the inline data: icon is allowed", m[1], m[2])
		}
	}
	for _, m := range regexp.MustCompile(`<(script|link|style)\b[^>]*>`).FindAllString(page, -1) {
		if m != "<script>" && m != "<style>" && m != `<link rel="icon" href="data:,">` {
			t.Errorf("the page has %s: only inline <script> and <style> are allowed", m)
		}
	}
	calls := regexp.MustCompile(`fetch\(([^,)]*)`).FindAllStringSubmatch(page, -1)
	if len(calls) != 1 || calls[0][1] != "'stats'" {
		t.Errorf("the page's fetch calls are %q, want one, of 'stats'", calls)
	}
}

// TestDashboardPolicy checks the headers of the page, and that its
// Content-Security-Policy allows its own inline style and script (by
// hash) and nothing else: no other host, no other script.
func TestDashboardPolicy(t *testing.T) {
	srv := serve(t, Options{Stats: func() any { return map[string]any{} }})
	resp, body := fetch(t, srv.URL+"/", "")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	csp := resp.Header.Get("Content-Security-Policy")
	inline := func(tag string) string {
		i := strings.Index(body, "<"+tag+">")
		j := strings.Index(body, "</"+tag+">")
		if i < 0 || j < i {
			t.Fatalf("no inline %s in the page", tag)
		}
		sum := sha256.Sum256([]byte(body[i+len(tag)+2 : j]))
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	for _, want := range []string{
		"default-src 'none'", "script-src " + inline("script"), "style-src " + inline("style"),
		"connect-src 'self'", "img-src data:", "frame-ancestors 'none'", "base-uri 'none'",
	} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	for h, want := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if r, _ := fetch(t, srv.URL+"/other", ""); r.StatusCode != 404 {
		t.Errorf("GET /other = %d, want 404: only / is the page", r.StatusCode)
	}
}

// TestDashboardToken checks that with a token the page loads without it
// and holds none of the data, while /stats needs it.
func TestDashboardToken(t *testing.T) {
	doc := map[string]any{"routes": []any{map[string]any{"name": "secret-route", "backends": []any{map[string]any{"url": "http://10.9.8.7:3001"}}}}}
	srv := serve(t, Options{Token: func() string { return "tok" }, Stats: func() any { return doc }})
	resp, page := fetch(t, srv.URL+"/", "")
	if resp.StatusCode != 200 {
		t.Fatalf("GET / without the token = %d, want 200", resp.StatusCode)
	}
	for _, s := range []string{"secret-route", "10.9.8.7"} {
		if strings.Contains(page, s) {
			t.Errorf("the page holds %q", s)
		}
	}
	for _, tok := range []string{"", "wrong"} {
		if r, _ := fetch(t, srv.URL+"/stats", tok); r.StatusCode != 401 {
			t.Errorf("GET /stats with token %q = %d, want 401", tok, r.StatusCode)
		}
	}
	r, body := fetch(t, srv.URL+"/stats", "tok")
	if r.StatusCode != 200 || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET /stats with the token = %d, %q, %q", r.StatusCode, r.Header.Get("Content-Type"), r.Header.Get("Cache-Control"))
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil || !strings.Contains(body, "secret-route") {
		t.Errorf("/stats = %q (%v), want the document", body, err)
	}
}

func TestNoDashboardWithoutStats(t *testing.T) {
	srv := serve(t, Options{})
	for _, p := range []string{"/", "/stats"} {
		if r, _ := fetch(t, srv.URL+p, ""); r.StatusCode != 404 {
			t.Errorf("GET %s without Options.Stats = %d, want 404", p, r.StatusCode)
		}
	}
}
