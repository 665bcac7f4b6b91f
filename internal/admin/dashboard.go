package admin

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
)

// The dashboard is one HTML page with its style and script inline, built
// into the binary: no build step makes it and nothing it needs comes from
// another host. Its Content-Security-Policy allows exactly the embedded
// style and script (by hash) and requests to the admin listener itself,
// so even a route name or backend reason that held markup could not load
// or run anything.
//
//go:embed dashboard/index.html dashboard/dashboard.css dashboard/dashboard.js
var dashboardFiles embed.FS

// dashboardPage is the page as served, and its policy.
var dashboardPage, dashboardCSP = buildDashboard()

func buildDashboard() ([]byte, string) {
	read := func(name string) string {
		b, err := dashboardFiles.ReadFile("dashboard/" + name)
		if err != nil {
			panic(err) // embedded: present in every build
		}
		return string(b)
	}
	style, script := read("dashboard.css"), read("dashboard.js")
	page := strings.NewReplacer("{{style}}", style, "{{script}}", script).Replace(read("index.html"))
	csp := "default-src 'none'; script-src '" + cspHash(script) + "'; style-src '" + cspHash(style) + "'; " +
		"connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	return []byte(page), csp
}

// cspHash returns the CSP source expression that allows an inline element
// whose content is s.
func cspHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// dashboard serves the page. It holds no route or backend data, so it
// needs no token: the page fetches /stats, which does, and asks for the
// token when /stats answers 401.
func (a *API) dashboard(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", dashboardCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	w.Write(dashboardPage)
}

// stats serves the /stats document, compact: the page asks for it every
// second.
func (a *API) stats(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(a.opts.Stats())
}
