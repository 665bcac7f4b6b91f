package proxy

import (
	"bytes"
	"net/http"
	"strconv"
)

// redirects reports whether the request is to be answered with a redirect
// to https (tls.redirect_http) rather than served: on the plain listener,
// when the HTTPS listener runs.
func (x *exchange) redirects() bool {
	return x.rt.Config.TLS.RedirectHTTP && x.h.TLSPort > 0 && !x.client.Secure()
}

// rootPath is the path a redirect of a target without one (CONNECT's
// authority, OPTIONS' *) goes to.
var rootPath = []byte("/")

// redirect answers 308 with the request's URL on https: the Host without
// its port, the HTTPS listener's port unless it is 443, and path, the
// target's path and query as received. No backend is contacted.
func (x *exchange) redirect(path []byte) {
	host := x.host
	if len(host) > 0 && host[0] == '[' {
		host = host[:bytes.IndexByte(host, ']')+1]
	} else if i := bytes.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	if len(host) == 0 {
		x.fail(http.StatusBadRequest, ErrBadRequest, "a request to be redirected to https needs a Host")
		return
	}
	out := appendStatusLine(x.client.Begin(), http.StatusPermanentRedirect, nil)
	out = append(out, "Location: https://"...)
	out = append(out, host...)
	if x.h.TLSPort != 443 {
		out = append(out, ':')
		out = strconv.AppendInt(out, int64(x.h.TLSPort), 10)
	}
	if len(path) == 0 || path[0] != '/' {
		out = append(out, '/') // "http://h?q" has the path "/"
	}
	out = append(out, path...)
	out = append(out, '\r', '\n')
	x.client.Out = x.endHead(appendContentLength(out, 0), false)
	x.rec.Status = http.StatusPermanentRedirect
}
