package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Origin returns the backend's scheme://host:port, with the port filled in
// (80 for http, 443 for https) and the host lower-cased: where active health
// probes go, and the key of the backend's connection pool. It returns "" when
// the URL is invalid, which a validated Config never holds. It parses the URL
// on each call; call it once when building a runtime.
func (b Backend) Origin() string {
	u, err := parseBackendURL(b.URL)
	if err != nil {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return u.Scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// PathPrefix returns the path of the backend's URL, still escaped and
// without trailing slashes, which is prepended to every forwarded path: ""
// for "http://h:1" and "http://h:1/", "/v1" for "http://h:1/v1/". It returns
// "" when the URL is invalid, which a validated Config never holds.
func (b Backend) PathPrefix() string {
	u, err := parseBackendURL(b.URL)
	if err != nil {
		return ""
	}
	return strings.TrimRight(u.EscapedPath(), "/")
}

// parseBackendURL parses and checks a backend URL, returning the problem in
// the words of a FieldError.
func parseBackendURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("url is required")
	}
	u, err := url.Parse(s)
	switch {
	case err == nil && (u.Scheme == "http" || u.Scheme == "https"):
	case err != nil && isHTTPScheme(s):
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("not a valid URL: %s", err.Error())
	case !strings.Contains(s, "://") && !strings.HasPrefix(s, "/"):
		return nil, fmt.Errorf("scheme must be http or https (write %s)", quote("http://"+s))
	default:
		return nil, errors.New("scheme must be http or https")
	}
	switch {
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return nil, errors.New("host is required")
	case u.User != nil:
		return nil, errors.New("userinfo is not allowed (credentials would show in logs and metrics)")
	case u.RawQuery != "" || u.ForceQuery:
		return nil, errors.New("query is not allowed")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return nil, errors.New("fragment is not allowed")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, errors.New("port must be 1-65535")
		}
	}
	if !validHost(u.Hostname()) {
		return nil, errors.New("not a valid host name")
	}
	return u, nil
}

// isHTTPScheme reports whether s starts with http:// or https://, in any
// case.
func isHTTPScheme(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://")
}

// checkListen checks a listener address: host:port, where the host is
// empty, an IP address or a host name, and the port a number 0-65535 (0
// lets the system choose).
func checkListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New(`not host:port (e.g. "127.0.0.1:8080" or ":8080")`)
	}
	if !allDigits(port) {
		return errors.New("port must be a number 0-65535")
	}
	if n, err := strconv.Atoi(port); err != nil || n > 65535 {
		return errors.New("port must be a number 0-65535")
	}
	if host != "" && !validHost(host) {
		if _, err := netip.ParseAddr(host); err != nil {
			return errors.New("not a valid host")
		}
	}
	return nil
}

// normaliseHost turns a route's host into the form matching compares:
// lower case, without a port, and an IPv6 address without brackets. It
// accepts its own output.
func normaliseHost(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	if strings.Contains(s, "://") {
		return "", errors.New("must be a host name, not a URL")
	}
	if strings.ContainsAny(s, "/?#@") {
		return "", errors.New("must be a host name (with an optional port) and nothing else")
	}
	h := s
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return "", errors.New("missing ] after an IPv6 address")
		}
		if rest := h[end+1:]; rest != "" && !(rest[0] == ':' && validPort(rest[1:])) {
			return "", errors.New("bad port after an IPv6 address")
		}
		h = h[1:end]
		if a, err := netip.ParseAddr(h); err != nil || !a.Is6() || a.Zone() != "" {
			return "", errors.New("not a valid IPv6 address")
		}
		return strings.ToLower(h), nil
	}
	if a, err := netip.ParseAddr(h); err == nil && a.Is6() && a.Zone() == "" {
		return strings.ToLower(h), nil
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		if strings.Count(h, ":") > 1 {
			return "", errors.New("an IPv6 address must be written in brackets")
		}
		if !validPort(h[i+1:]) {
			return "", errors.New("port must be a number 1-65535")
		}
		h = h[:i]
	}
	if !validHost(h) {
		return "", errors.New("not a valid host name (letters, digits, '-', '_' and '.')")
	}
	return strings.ToLower(h), nil
}

func validPort(s string) bool {
	if !allDigits(s) {
		return false
	}
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535
}

// validHost reports whether s is an IP address (without zone) or a DNS
// name: labels of letters, digits, '-' and '_', joined by dots, with an
// optional final dot.
func validHost(s string) bool {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Zone() == ""
	}
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// parsePrefix parses a trusted_proxies entry: a CIDR, masked to its network
// address, or a bare IP address, taken as a /32 or /128.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, errors.New("not a CIDR (e.g. 10.0.0.0/8) or an IP address")
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, errors.New("not a CIDR (e.g. 10.0.0.0/8) or an IP address")
	}
	if a.Zone() != "" {
		return netip.Prefix{}, errors.New("an IPv6 zone is not allowed")
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
