package config

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// A problem line has the shape `path: value: why`:
//
//   - path: (root) for the whole document or file, else a field path of
//     keys (plain, or quoted when strange) joined by dots, each with
//     optional [n] indexes;
//   - value: a %q-quoted scalar, null, (missing), or a list or mapping in
//     flow form ([...] or {...}, balanced, its scalars quoted);
//   - why: anything but a line break, not empty.
//
// The path and the scalar values are matched by problemHead; a flow value,
// which nests, by flowEnd.
var problemHead = regexp.MustCompile(`^` +
	`(\(root\)|` + key + `(?:\[[0-9]+\])*(?:\.` + key + `(?:\[[0-9]+\])*)*)` +
	`: (` + quoted + `|null|\(missing\)|[\[{])`)

const (
	quoted = `"(?:[^"\\\n]|\\.)*"`
	key    = `(?:[A-Za-z0-9_-]+|` + quoted + `)`
)

// splitProblem splits a problem line into its path, value and why; ok is
// false when the line does not have the shape.
func splitProblem(line string) (path, value, why string, ok bool) {
	m := problemHead.FindStringSubmatchIndex(line)
	if m == nil {
		return "", "", "", false
	}
	path, start, end := line[m[2]:m[3]], m[4], m[5]
	if c := line[start]; c == '[' || c == '{' {
		if end = flowEnd(line, start); end < 0 {
			return "", "", "", false
		}
	}
	value, rest := line[start:end], line[end:]
	why, ok = strings.CutPrefix(rest, ": ")
	if !ok || why == "" || strings.ContainsAny(why, "\r\n") {
		return "", "", "", false
	}
	return path, value, why, true
}

// flowEnd returns the end of the balanced flow value starting at s[i], or
// -1.
func flowEnd(s string, i int) int {
	depth := 0
	for i < len(s) {
		switch s[i] {
		case '"':
			q, err := strconv.QuotedPrefix(s[i:])
			if err != nil {
				return -1
			}
			i += len(q)
			continue
		case '[', '{':
			depth++
		case ']', '}':
			depth--
		case '\n', '\r':
			return -1
		}
		i++
		if depth == 0 {
			return i
		}
	}
	return -1
}

// unreachable are the reasons no configuration can produce, and why.
var unreachable = map[string]string{
	"yaml: %s": "the YAML library panicked; it reports every error by returning it",
	// Tests run as root, whom access(2) lets write anything on a
	// writable file system.
	"the file cannot be written":            "a file the user may not write (root may)",
	"its directory %s cannot be written to": "a directory the user may not write to (root may)",
}

// messages is one row per message that Parse and Load can produce: the
// reason (the constant format in the source) and a document (for Load, a
// file name) that produces exactly one problem line, want.
var messages = []struct {
	name, reason, doc, want string
	load                    bool // doc is a file name for Load
}{
	// The file and the document as a whole.
	{name: "file cannot be read", reason: "cannot read the file: %s", load: true,
		doc:  "testdata/no-such-file.yaml",
		want: `(root): "testdata/no-such-file.yaml": cannot read the file: no such file or directory`},
	{name: "YAML syntax (scanner)", reason: "yaml: line %d: %s",
		doc:  "access_log: stderr\n  admin: x\n",
		want: `(root): "admin: x": yaml: line 2: mapping values are not allowed in this context`},
	{name: "YAML syntax (parser)", reason: "yaml: line %d: %s",
		doc:  "listen: \":8080\"\n  admin: x\n",
		want: `(root): "admin: x": yaml: line 2: did not find expected key`},
	{name: "YAML syntax (parser, which counts lines from 0)", reason: "yaml: line %d: %s",
		doc:  "retry:\n  methods: [GET,\n  attempts: 2\n",
		want: `(root): "methods: [GET,": yaml: line 2: did not find expected ',' or ']'`},
	{name: "YAML control character", reason: "yaml: line %d: %s",
		doc:  "listen: \":8080\"\naccess_log: \x01\n",
		want: `(root): "access_log: \x01": yaml: line 2: control characters are not allowed`},
	{name: "YAML unknown anchor", reason: "yaml: line %d: %s",
		doc:  "admin: {token: x}\nlisten: *addr\n",
		want: `(root): "listen: *addr": yaml: line 2: unknown anchor 'addr' referenced`},
	{name: "more than one document", reason: "the file holds more than one YAML document; write one",
		doc:  minimal + "---\n" + minimal,
		want: `(root): "---": the file holds more than one YAML document; write one`},
	{name: "document not a mapping", reason: "expected a mapping, got %s",
		doc:  "- a\n- b\n",
		want: `(root): ["a", "b"]: expected a mapping, got a list`},
	{name: "alias bomb", reason: "the document is too large or uses too many aliases",
		doc:  aliasBomb(),
		want: `routes[6].retry: {"<<": [*r5, *r5, *r5, *r5, *r5, *r5, *r5, *r5, *r5, *r5]}: the document is too large or uses too many aliases`},

	// Keys and YAML forms.
	{name: "unknown key", reason: "unknown key",
		doc:  "colour: blue\n" + minimal,
		want: `colour: "blue": unknown key`},
	{name: "unknown key near a known one", reason: "unknown key (did you mean %s?)",
		doc:  "listn: \":8080\"\n" + minimal,
		want: `listn: ":8080": unknown key (did you mean listen?)`},
	{name: "listener-wide setting in a route", reason: "listener-wide setting, not allowed in a route",
		doc:  "routes:\n  - {path_prefix: /a, backends: [http://a]}\n  - {path_prefix: /b, backends: [http://a], timeouts: {client_header: 5s}}\n",
		want: `routes[1].timeouts.client_header: "5s": listener-wide setting, not allowed in a route`},
	{name: "duplicate key", reason: "duplicate key (first at line %d)",
		doc:  "listen: \":1\"\nlisten: \":2\"\n" + minimal,
		want: `listen: ":2": duplicate key (first at line 1)`},
	{name: "key not a string", reason: "mapping keys must be strings, got %s",
		doc:  "admin: {[a]: 1}\n" + minimal,
		want: `admin: ["a"]: mapping keys must be strings, got a list`},
	{name: "merge of a scalar", reason: "<< must merge a mapping or a list of mappings",
		doc:  "admin: {<<: 1}\n" + minimal,
		want: `admin: "1": << must merge a mapping or a list of mappings`},
	{name: "null value", reason: "no value; remove the key to get the default, or give a value",
		doc:  "listen:\n" + minimal,
		want: `listen: null: no value; remove the key to get the default, or give a value`},
	{name: "empty list item", reason: "empty list item",
		doc:  "trusted_proxies: [~]\n" + minimal,
		want: `trusted_proxies[0]: null: empty list item`},
	{name: "not a list", reason: "expected a list, got %s",
		doc:  "trusted_proxies: 10.0.0.0/8\n" + minimal,
		want: `trusted_proxies: "10.0.0.0/8": expected a list, got a string`},
	{name: "routes not a list", reason: "expected a list of routes, got %s",
		doc:  "routes: {path_prefix: /}\n",
		want: `routes: {"path_prefix": "/"}: expected a list of routes, got a mapping`},
	{name: "route not a mapping", reason: "expected a route mapping, got %s",
		doc:  "routes: [/api]\n",
		want: `routes[0]: "/api": expected a route mapping, got a string`},
	{name: "backend neither URL nor mapping", reason: "expected a URL or a mapping with url and weight, got %s",
		doc:  "routes: [{path_prefix: /, backends: [[http://a]]}]\n",
		want: `routes[0].backends[0]: ["http://a"]: expected a URL or a mapping with url and weight, got a list`},
	{name: "not a string", reason: "expected a string, got %s",
		doc:  "listen: [a]\n" + minimal,
		want: `listen: ["a"]: expected a string, got a list`},
	{name: "boolean for a string", reason: "expected a string, got a boolean; quote it if you mean the word",
		doc:  "admin: {token: true}\n" + minimal,
		want: `admin.token: "true": expected a string, got a boolean; quote it if you mean the word`},
	{name: "YAML 1.1 boolean word", reason: "YAML 1.1 reads a bare %s as a boolean; quote it",
		doc:  "admin: {token: yes}\n" + minimal,
		want: `admin.token: "yes": YAML 1.1 reads a bare yes as a boolean; quote it`},
	{name: "bare off for access_log", reason: `YAML reads a bare %s as a boolean; write access_log: "off" with the quotes to turn the access log off`,
		doc:  "access_log: off\n" + minimal,
		want: `access_log: "off": YAML reads a bare off as a boolean; write access_log: "off" with the quotes to turn the access log off`},
	{name: "not an integer", reason: "expected an integer, got %s",
		doc:  "retry: {attempts: \"3\"}\n" + minimal,
		want: `retry.attempts: "3": expected an integer, got a string`},
	{name: "integer out of range", reason: "integer out of range",
		doc:  "retry: {attempts: 9223372036854775808}\n" + minimal,
		want: `retry.attempts: "9223372036854775808": integer out of range`},
	{name: "not a boolean", reason: "expected true or false, got %s",
		doc:  "routes: [{path_prefix: /, strip_prefix: \"yes\", backends: [http://a]}]\n",
		want: `routes[0].strip_prefix: "yes": expected true or false, got a string`},

	// Durations, sizes, statuses.
	{name: "not a duration", reason: "expected a duration, got %s",
		doc:  "timeouts: {client_idle: true}\n" + minimal,
		want: `timeouts.client_idle: "true": expected a duration, got a boolean`},
	{name: "bad duration", reason: "not a duration (write a Go duration such as 250ms, 5s or 1m)",
		doc:  "timeouts: {upstream_header: 5 parsecs}\n" + minimal,
		want: `timeouts.upstream_header: "5 parsecs": not a duration (write a Go duration such as 250ms, 5s or 1m)`},
	{name: "negative duration", reason: "must not be negative",
		doc:  "timeouts: {upstream_body: -5s}\n" + minimal,
		want: `timeouts.upstream_body: "-5s": must not be negative`},
	{name: "negative size", reason: "must not be negative",
		doc:  "limits: {max_response_body: -1}\n" + minimal,
		want: `limits.max_response_body: "-1": must not be negative`},
	{name: "not a size", reason: "expected a size, got %s",
		doc:  "limits: {max_request_body: {a: 1}}\n" + minimal,
		want: `limits.max_request_body: {"a": "1"}: expected a size, got a mapping`},
	{name: "size too large", reason: "too large (at most %d bytes)",
		doc:  "limits: {max_request_body: 9999999999GiB}\n" + minimal,
		want: `limits.max_request_body: "9999999999GiB": too large (at most 9223372036854775807 bytes)`},
	{name: "size unit", reason: "unknown unit (use B, KiB, MiB, GiB, KB, MB or GB)",
		doc:  "limits: {max_request_body: 1TiB}\n" + minimal,
		want: `limits.max_request_body: "1TiB": unknown unit (use B, KiB, MiB, GiB, KB, MB or GB)`},
	{name: "bad size", reason: "not a size (write bytes as an integer, or a number with a unit such as 64KiB or 16MiB)",
		doc:  "limits: {max_request_body: 12 furlongs}\n" + minimal,
		want: `limits.max_request_body: "12 furlongs": not a size (write bytes as an integer, or a number with a unit such as 64KiB or 16MiB)`},
	{name: "fraction of a byte", reason: "not a whole number of bytes",
		doc:  "limits: {max_request_body: 1.5B}\n" + minimal,
		want: `limits.max_request_body: "1.5B": not a whole number of bytes`},
	{name: "status not a scalar", reason: "expected a status, a range or a list of both, got %s",
		doc:  "health: {passive: {failure_status: [500]}}\n" + minimal,
		want: `health.passive.failure_status: ["500"]: expected a status, a range or a list of both, got a list`},
	{name: "empty status set", reason: "empty; write a code, a range such as 500-599, or a comma-separated list of both",
		doc:  "health: {passive: {failure_status: \"\"}}\n" + minimal,
		want: `health.passive.failure_status: "": empty; write a code, a range such as 500-599, or a comma-separated list of both`},
	{name: "empty status element", reason: "empty element in the list",
		doc:  "health: {passive: {failure_status: \"500,,502\"}}\n" + minimal,
		want: `health.passive.failure_status: "500,,502": empty element in the list`},
	{name: "status range backwards", reason: "range %d-%d runs backwards",
		doc:  "health: {passive: {failure_status: 399-200}}\n" + minimal,
		want: `health.passive.failure_status: "399-200": range 399-200 runs backwards`},
	{name: "not a status", reason: "%q is not a status code",
		doc:  "health: {passive: {failure_status: 5xx}}\n" + minimal,
		want: `health.passive.failure_status: "5xx": "5xx" is not a status code`},
	{name: "status out of range", reason: "status %s is outside 100-599",
		doc:  "health: {active: {expect_status: 600}}\n" + minimal,
		want: `health.active.expect_status: "600": status 600 is outside 100-599`},

	// Listeners, trusted proxies, access log.
	{name: "listen not host:port", reason: `not host:port (e.g. "127.0.0.1:8080" or ":8080")`,
		doc:  "listen: localhost\n" + minimal,
		want: `listen: "localhost": not host:port (e.g. "127.0.0.1:8080" or ":8080")`},
	{name: "listen port", reason: "port must be a number 0-65535",
		doc:  "admin: {listen: \"127.0.0.1:99999\"}\n" + minimal,
		want: `admin.listen: "127.0.0.1:99999": port must be a number 0-65535`},
	{name: "listen host", reason: "not a valid host",
		doc:  "listen: \"a b:80\"\n" + minimal,
		want: `listen: "a b:80": not a valid host`},
	{name: "admin on the proxy's address", reason: "same address as listen",
		doc:  "listen: \"127.0.0.1:8080\"\nadmin: {listen: \"127.0.0.1:8080\"}\n" + minimal,
		want: `admin.listen: "127.0.0.1:8080": same address as listen`},
	{name: "trusted proxy not a CIDR", reason: "not a CIDR (e.g. 10.0.0.0/8) or an IP address",
		doc:  "trusted_proxies: [10.0.0.0/8, 10.0.0.0/33]\n" + minimal,
		want: `trusted_proxies[1]: "10.0.0.0/33": not a CIDR (e.g. 10.0.0.0/8) or an IP address`},
	{name: "trusted proxy with a zone", reason: "an IPv6 zone is not allowed",
		doc:  "trusted_proxies: [\"fe80::1%eth0\"]\n" + minimal,
		want: `trusted_proxies[0]: "fe80::1%eth0": an IPv6 zone is not allowed`},
	{name: "empty access_log", reason: `must not be empty; write "off" to turn the access log off`,
		doc:  "access_log: \"\"\n" + minimal,
		want: `access_log: "": must not be empty; write "off" to turn the access log off`},
	{name: "access_log in a directory that does not exist", reason: "its directory %s does not exist",
		doc:  "access_log: /nonexistent-sluice/x.log\n" + minimal,
		want: `access_log: "/nonexistent-sluice/x.log": its directory "/nonexistent-sluice" does not exist`},
	{name: "access_log a directory", reason: "is a directory, not a file to write the access log to",
		doc:  "access_log: /\n" + minimal,
		want: `access_log: "/": is a directory, not a file to write the access log to`},
	{name: "access_log under a file", reason: "%s is not a directory",
		doc:  "access_log: /dev/null/x.log\n" + minimal,
		want: `access_log: "/dev/null/x.log": "/dev/null" is not a directory`},

	// Routes.
	{name: "no routes key", reason: "at least one route is required",
		doc:  "listen: \":8080\"\n",
		want: `routes: (missing): at least one route is required`},
	{name: "empty routes", reason: "at least one route is required",
		doc:  "routes: []\n",
		want: `routes: []: at least one route is required`},
	{name: "path_prefix missing", reason: `required; write "/" to match every path`,
		doc:  "routes: [{backends: [http://a]}]\n",
		want: `routes[0].path_prefix: (missing): required; write "/" to match every path`},
	{name: "path_prefix empty", reason: `required; write "/" to match every path`,
		doc:  "routes: [{path_prefix: \"\", backends: [http://a]}]\n",
		want: `routes[0].path_prefix: "": required; write "/" to match every path`},
	{name: "path_prefix without slash", reason: `must start with "/"`,
		doc:  "routes: [{path_prefix: api, backends: [http://a]}]\n",
		want: `routes[0].path_prefix: "api": must start with "/"`},
	{name: "path_prefix with query", reason: `must not contain "?" or "#"`,
		doc:  "routes: [{path_prefix: \"/a?b\", backends: [http://a]}]\n",
		want: `routes[0].path_prefix: "/a?b": must not contain "?" or "#"`},
	{name: "path_prefix with space", reason: "must not contain spaces or control characters",
		doc:  "routes: [{path_prefix: /a b, backends: [http://a]}]\n",
		want: `routes[0].path_prefix: "/a b": must not contain spaces or control characters`},
	{name: "path_prefix with dot segment", reason: `must not contain "." or ".." segments (request paths are cleaned before matching)`,
		doc:  "routes: [{path_prefix: /a/../b, backends: [http://a]}]\n",
		want: `routes[0].path_prefix: "/a/../b": must not contain "." or ".." segments (request paths are cleaned before matching)`},
	{name: "host is a URL", reason: "must be a host name, not a URL",
		doc:  "routes: [{path_prefix: /, host: \"http://example.com\", backends: [http://a]}]\n",
		want: `routes[0].host: "http://example.com": must be a host name, not a URL`},
	{name: "host with a path", reason: "must be a host name (with an optional port) and nothing else",
		doc:  "routes: [{path_prefix: /, host: example.com/api, backends: [http://a]}]\n",
		want: `routes[0].host: "example.com/api": must be a host name (with an optional port) and nothing else`},
	{name: "host IPv6 unclosed", reason: "missing ] after an IPv6 address",
		doc:  "routes: [{path_prefix: /, host: \"[::1\", backends: [http://a]}]\n",
		want: `routes[0].host: "[::1": missing ] after an IPv6 address`},
	{name: "host IPv6 bad port", reason: "bad port after an IPv6 address",
		doc:  "routes: [{path_prefix: /, host: \"[::1]:x\", backends: [http://a]}]\n",
		want: `routes[0].host: "[::1]:x": bad port after an IPv6 address`},
	{name: "host IPv4 in brackets", reason: "not a valid IPv6 address",
		doc:  "routes: [{path_prefix: /, host: \"[1.2.3.4]\", backends: [http://a]}]\n",
		want: `routes[0].host: "[1.2.3.4]": not a valid IPv6 address`},
	{name: "host IPv6 without brackets", reason: "an IPv6 address must be written in brackets",
		doc:  "routes: [{path_prefix: /, host: \"fe80::1:zz\", backends: [http://a]}]\n",
		want: `routes[0].host: "fe80::1:zz": an IPv6 address must be written in brackets`},
	{name: "host port", reason: "port must be a number 1-65535",
		doc:  "routes: [{path_prefix: /, host: \"example.com:0\", backends: [http://a]}]\n",
		want: `routes[0].host: "example.com:0": port must be a number 1-65535`},
	{name: "host name", reason: "not a valid host name (letters, digits, '-', '_' and '.')",
		doc:  "routes: [{path_prefix: /, host: \"exa mple.com\", backends: [http://a]}]\n",
		want: `routes[0].host: "exa mple.com": not a valid host name (letters, digits, '-', '_' and '.')`},
	{name: "name with a control character", reason: "must not contain control characters",
		doc:  "routes: [{name: \"a\\tb\", path_prefix: /, backends: [http://a]}]\n",
		want: `routes[0].name: "a\tb": must not contain control characters`},
	{name: "balancer", reason: "unknown balancer; one of round_robin, least_request, ewma or hash",
		doc:  "routes: [{path_prefix: /, balancer: random, backends: [http://a]}]\n",
		want: `routes[0].balancer: "random": unknown balancer; one of round_robin, least_request, ewma or hash`},
	{name: "hash_key without hash", reason: "hash_key is only for balancer hash",
		doc:  "routes: [{path_prefix: /, balancer: ewma, hash_key: path, backends: [http://a]}]\n",
		want: `routes[0].hash_key: "path": hash_key is only for balancer hash`},
	{name: "hash_key header without a name", reason: "header:<Name> needs a header field name (a token)",
		doc:  "routes: [{path_prefix: /, balancer: hash, hash_key: \"header:\", backends: [http://a]}]\n",
		want: `routes[0].hash_key: "header:": header:<Name> needs a header field name (a token)`},
	{name: "hash_key cookie name not a token", reason: "cookie:<name> needs a cookie name (a token)",
		doc:  "routes: [{path_prefix: /, balancer: hash, hash_key: \"cookie:a b\", backends: [http://a]}]\n",
		want: `routes[0].hash_key: "cookie:a b": cookie:<name> needs a cookie name (a token)`},
	{name: "hash_key unknown", reason: "must be client_ip, header:<Name>, cookie:<name> or path",
		doc:  "routes: [{path_prefix: /, balancer: hash, hash_key: query, backends: [http://a]}]\n",
		want: `routes[0].hash_key: "query": must be client_ip, header:<Name>, cookie:<name> or path`},
	{name: "backends missing", reason: "at least one backend is required",
		doc:  "routes: [{path_prefix: /}]\n",
		want: `routes[0].backends: (missing): at least one backend is required`},
	{name: "backends empty", reason: "at least one backend is required",
		doc:  "routes: [{path_prefix: /, backends: []}]\n",
		want: `routes[0].backends: []: at least one backend is required`},
	{name: "same host and path_prefix", reason: "routes[%d] has the same host and path_prefix",
		doc:  "routes: [{path_prefix: /a, backends: [http://a]}, {name: b, path_prefix: /a, backends: [http://a]}]\n",
		want: `routes[1].path_prefix: "/a": routes[0] has the same host and path_prefix`},
	{name: "same name", reason: "name already used by routes[%d]; names must be unique (the default is host + path_prefix)",
		doc:  "routes: [{path_prefix: /a, backends: [http://a]}, {name: /a, path_prefix: /b, backends: [http://a]}]\n",
		want: `routes[1].name: "/a": name already used by routes[0]; names must be unique (the default is host + path_prefix)`},

	// Backends.
	{name: "backend url missing", reason: "url is required",
		doc:  "routes: [{path_prefix: /, backends: [{weight: 2}]}]\n",
		want: `routes[0].backends[0]: (missing): url is required`},
	{name: "backend url empty", reason: "url is required",
		doc:  "routes: [{path_prefix: /, backends: [\"\"]}]\n",
		want: `routes[0].backends[0]: "": url is required`},
	{name: "backend URL does not parse", reason: "not a valid URL: %s",
		doc:  "routes: [{path_prefix: /, backends: [\"http://[::1\"]}]\n",
		want: `routes[0].backends[0]: "http://[::1": not a valid URL: missing ']' in host`},
	{name: "backend without scheme", reason: "scheme must be http or https (write %s)",
		doc:  "routes: [{path_prefix: /, backends: [\"127.0.0.1:7\"]}]\n",
		want: `routes[0].backends[0]: "127.0.0.1:7": scheme must be http or https (write "http://127.0.0.1:7")`},
	{name: "backend scheme (the documented example)", reason: "scheme must be http or https",
		doc:  "routes:\n  - {path_prefix: /a, backends: [http://a]}\n  - {path_prefix: /b, backends: [htp://x]}\n",
		want: `routes[1].backends[0]: "htp://x": scheme must be http or https`},
	{name: "backend scheme in a mapping", reason: "scheme must be http or https",
		doc:  "routes: [{path_prefix: /, backends: [{url: \"ftp://x\", weight: 2}]}]\n",
		want: `routes[0].backends[0]: "ftp://x": scheme must be http or https`},
	{name: "backend without host", reason: "host is required",
		doc:  "routes: [{path_prefix: /, backends: [\"http:///path\"]}]\n",
		want: `routes[0].backends[0]: "http:///path": host is required`},
	{name: "backend userinfo", reason: "userinfo is not allowed (credentials would show in logs and metrics)",
		doc:  "routes: [{path_prefix: /, backends: [\"http://u:pw@a\"]}]\n",
		want: `routes[0].backends[0]: "http://u:pw@a": userinfo is not allowed (credentials would show in logs and metrics)`},
	{name: "backend query", reason: "query is not allowed",
		doc:  "routes: [{path_prefix: /, backends: [\"http://a/?q=1\"]}]\n",
		want: `routes[0].backends[0]: "http://a/?q=1": query is not allowed`},
	{name: "backend fragment", reason: "fragment is not allowed",
		doc:  "routes: [{path_prefix: /, backends: [\"http://a/#f\"]}]\n",
		want: `routes[0].backends[0]: "http://a/#f": fragment is not allowed`},
	{name: "backend port", reason: "port must be 1-65535",
		doc:  "routes: [{path_prefix: /, backends: [\"http://a:0\"]}]\n",
		want: `routes[0].backends[0]: "http://a:0": port must be 1-65535`},
	{name: "backend host name", reason: "not a valid host name",
		doc:  "routes: [{path_prefix: /, backends: [\"http://a_b!c\"]}]\n",
		want: `routes[0].backends[0]: "http://a_b!c": not a valid host name`},
	{name: "backend twice", reason: "same backend as backends[%d]",
		doc:  "routes: [{path_prefix: /, backends: [\"http://a:1\", \"http://a:1/\"]}]\n",
		want: `routes[0].backends[1]: "http://a:1/": same backend as backends[0]`},
	{name: "backend weight", reason: "must be %d-%d",
		doc:  "routes: [{path_prefix: /, backends: [{url: \"http://a\", weight: 0}]}]\n",
		want: `routes[0].backends[0].weight: "0": must be 1-1000`},

	// Timeouts, limits, health, retry.
	{name: "zero timeout", reason: "must be greater than 0",
		doc:  "timeouts: {client_header: 0s}\n" + minimal,
		want: `timeouts.client_header: "0s": must be greater than 0`},
	{name: "zero size as written", reason: "must be greater than 0",
		doc:  "limits: {max_header_bytes: 0}\n" + minimal,
		want: `limits.max_header_bytes: "0": must be greater than 0`},
	{name: "zero timeout in a route", reason: "must be greater than 0",
		doc:  "routes: [{path_prefix: /, backends: [http://a], timeouts: {upstream_connect: 0}}]\n",
		want: `routes[0].timeouts.upstream_connect: "0": must be greater than 0`},
	{name: "probe path without slash", reason: `must start with "/" ("" disables active checks)`,
		doc:  "health: {active: {path: health}}\n" + minimal,
		want: `health.active.path: "health": must start with "/" ("" disables active checks)`},
	{name: "probe path with fragment", reason: `must not contain "#"`,
		doc:  "health: {active: {path: \"/h#x\"}}\n" + minimal,
		want: `health.active.path: "/h#x": must not contain "#"`},
	{name: "threshold below 1", reason: "must be at least %d",
		doc:  "health: {active: {healthy_threshold: 0}}\n" + minimal,
		want: `health.active.healthy_threshold: "0": must be at least 1`},
	{name: "percent above 100", reason: "must be %d-%d",
		doc:  "health: {passive: {max_ejected_percent: 101}}\n" + minimal,
		want: `health.passive.max_ejected_percent: "101": must be 0-100`},
	{name: "max_ejection_time below ejection_time", reason: "must be at least ejection_time (%s)",
		doc:  "health: {passive: {ejection_time: 1m, max_ejection_time: 30s}}\n" + minimal,
		want: `health.passive.max_ejection_time: "30s": must be at least ejection_time (1m)`},
	{name: "max_ejection_time inherited below a route's ejection_time", reason: "must be at least ejection_time (%s)",
		doc:  "routes: [{path_prefix: /, backends: [http://a], health: {passive: {ejection_time: 10m}}}]\n",
		want: `routes[0].health.passive.max_ejection_time: "5m": must be at least ejection_time (10m)`},
	{name: "retry status", reason: "must be a status from 100 to 599",
		doc:  "retry: {on_status: [502, 99]}\n" + minimal,
		want: `retry.on_status[1]: "99": must be a status from 100 to 599`},
	{name: "retry method empty", reason: "empty method",
		doc:  "retry: {methods: [\"\"]}\n" + minimal,
		want: `retry.methods[0]: "": empty method`},
	{name: "retry method not a token", reason: "not a valid HTTP method",
		doc:  "retry: {methods: [BAD METHOD]}\n" + minimal,
		want: `retry.methods[0]: "BAD METHOD": not a valid HTTP method`},
	{name: "retry method lower case", reason: "methods are case-sensitive; write %s",
		doc:  "retry: {methods: [get]}\n" + minimal,
		want: `retry.methods[0]: "get": methods are case-sensitive; write "GET"`},

	// Rate limit and circuit breaker.
	{name: "rate not a number", reason: "expected a number, got %s",
		doc:  "rate_limit: {requests_per_second: \"10\"}\n" + minimal,
		want: `rate_limit.requests_per_second: "10": expected a number, got a string`},
	{name: "rate not finite", reason: "not a finite number",
		doc:  "rate_limit: {requests_per_second: .inf}\n" + minimal,
		want: `rate_limit.requests_per_second: ".inf": not a finite number`},
	{name: "rate negative", reason: "must not be negative",
		doc:  "rate_limit: {requests_per_second: -0.5}\n" + minimal,
		want: `rate_limit.requests_per_second: "-0.5": must not be negative`},
	{name: "rate negative in a route", reason: "must not be negative",
		doc:  "routes: [{path_prefix: /, backends: [http://a], rate_limit: {requests_per_second: -1}}]\n",
		want: `routes[0].rate_limit.requests_per_second: "-1": must not be negative`},
	{name: "burst negative", reason: "must be at least %d",
		doc:  "rate_limit: {requests_per_second: 1, burst: -1}\n" + minimal,
		want: `rate_limit.burst: "-1": must be at least 0`},
	{name: "rate key unknown", reason: "must be client_ip, header:<Name> or route",
		doc:  "rate_limit: {key: cookie:session}\n" + minimal,
		want: `rate_limit.key: "cookie:session": must be client_ip, header:<Name> or route`},
	{name: "rate key header without a name", reason: "header:<Name> needs a header field name (a token)",
		doc:  "routes: [{path_prefix: /, backends: [http://a], rate_limit: {key: \"header:\"}}]\n",
		want: `routes[0].rate_limit.key: "header:": header:<Name> needs a header field name (a token)`},
	{name: "max_requests_per_backend negative", reason: "must be at least %d",
		doc:  "circuit_breaker: {max_requests_per_backend: -2}\n" + minimal,
		want: `circuit_breaker.max_requests_per_backend: "-2": must be at least 0`},

	// Service discovery.
	{name: "resolver not an address", reason: `not an IP address with an optional port (e.g. "10.0.0.2:53")`,
		doc:  "discovery: {resolvers: [\"10.0.0.2:53\", dns.example]}\n" + minimal,
		want: `discovery.resolvers[1]: "dns.example": not an IP address with an optional port (e.g. "10.0.0.2:53")`},
	{name: "resolver port 0", reason: "port must be 1-65535",
		doc:  "discovery: {resolvers: [\"127.0.0.1:0\"]}\n" + minimal,
		want: `discovery.resolvers[0]: "127.0.0.1:0": port must be 1-65535`},
	{name: "refresh below a second", reason: "must be at least 1s (a name is not resolved more often than once a second)",
		doc:  "discovery: {refresh: 500ms}\n" + minimal,
		want: `discovery.refresh: "500ms": must be at least 1s (a name is not resolved more often than once a second)`},
	{name: "discovery unknown", reason: `unknown discovery; one of dns or srv, or "" for none`,
		doc:  "routes: [{path_prefix: /, backends: [{url: \"http://a\", discovery: consul}]}]\n",
		want: `routes[0].backends[0].discovery: "consul": unknown discovery; one of dns or srv, or "" for none`},
	{name: "discovery of an IP address", reason: "the URL's host is an IP address; discovery needs a name",
		doc:  "routes: [{path_prefix: /, backends: [{url: \"http://10.0.0.1:8080\", discovery: dns}]}]\n",
		want: `routes[0].backends[0].discovery: "dns": the URL's host is an IP address; discovery needs a name`},
	{name: "srv with a port", reason: "a port is not allowed with discovery: srv (the SRV records give the ports)",
		doc:  "routes: [{path_prefix: /, backends: [{url: \"http://_http._tcp.api.service.consul:80\", discovery: srv}]}]\n",
		want: `routes[0].backends[0]: "http://_http._tcp.api.service.consul:80": a port is not allowed with discovery: srv (the SRV records give the ports)`},
	{name: "srv with a weight", reason: "not allowed with discovery: srv (the SRV records give the weights)",
		doc:  "routes: [{path_prefix: /, backends: [{url: \"http://_http._tcp.api.service.consul\", discovery: srv, weight: 2}]}]\n",
		want: `routes[0].backends[0].weight: "2": not allowed with discovery: srv (the SRV records give the weights)`},

	// TLS. The files are in testdata/tls (see gen.go there).
	{name: "listen off without tls.listen", reason: `"" turns the plain listener off, which needs tls.listen`,
		doc:  "listen: \"\"\n" + minimal,
		want: `listen: "": "" turns the plain listener off, which needs tls.listen`},
	{name: "tls.listen same as listen", reason: "same address as listen",
		doc:  "listen: \"127.0.0.1:8443\"\ntls: {listen: \"127.0.0.1:8443\", certificates: [{cert: testdata/tls/a.crt, key: testdata/tls/a.key}]}\n" + minimal,
		want: `tls.listen: "127.0.0.1:8443": same address as listen`},
	{name: "tls.listen same as admin.listen", reason: "same address as admin.listen",
		doc:  "admin: {listen: \"127.0.0.1:8443\"}\ntls: {listen: \"127.0.0.1:8443\", certificates: [{cert: testdata/tls/a.crt, key: testdata/tls/a.key}]}\n" + minimal,
		want: `tls.listen: "127.0.0.1:8443": same address as admin.listen`},
	{name: "tls.listen without certificates", reason: "at least one certificate is required when tls.listen is set",
		doc:  "tls: {listen: \":8443\"}\n" + minimal,
		want: `tls.certificates: (missing): at least one certificate is required when tls.listen is set`},
	{name: "tls min_version", reason: `must be "1.2" or "1.3"`,
		doc:  "tls: {min_version: 1.1}\n" + minimal,
		want: `tls.min_version: "1.1": must be "1.2" or "1.3"`},
	{name: "tls max_concurrent_streams", reason: "must be at least %d",
		doc:  "tls: {max_concurrent_streams: 0}\n" + minimal,
		want: `tls.max_concurrent_streams: "0": must be at least 1`},
	{name: "redirect_http without tls.listen", reason: "needs tls.listen (where to redirect to)",
		doc:  "tls: {redirect_http: true}\n" + minimal,
		want: `tls.redirect_http: "true": needs tls.listen (where to redirect to)`},
	{name: "redirect_http without listen", reason: `needs listen (the plain listener is off: listen is "")`,
		doc:  "listen: \"\"\ntls: {listen: \":8443\", redirect_http: true, certificates: [{cert: testdata/tls/a.crt, key: testdata/tls/a.key}]}\n" + minimal,
		want: `tls.redirect_http: "true": needs listen (the plain listener is off: listen is "")`},
	{name: "certificate without cert", reason: "required: the certificate's PEM file",
		doc:  "tls: {certificates: [{key: testdata/tls/a.key}]}\n" + minimal,
		want: `tls.certificates[0].cert: (missing): required: the certificate's PEM file`},
	{name: "certificate without key", reason: "required: the private key's PEM file",
		doc:  "tls: {certificates: [{cert: testdata/tls/a.crt}]}\n" + minimal,
		want: `tls.certificates[0].key: (missing): required: the private key's PEM file`},
	{name: "certificate file missing", reason: "cannot read the file: %s",
		doc:  "tls: {certificates: [{cert: testdata/tls/none.crt, key: testdata/tls/a.key}]}\n" + minimal,
		want: `tls.certificates[0].cert: "testdata/tls/none.crt": cannot read the file: no such file or directory`},
	{name: "certificate file a directory", reason: "not a regular file",
		doc:  "tls: {certificates: [{cert: testdata/tls, key: testdata/tls/a.key}]}\n" + minimal,
		want: `tls.certificates[0].cert: "testdata/tls": not a regular file`},
	{name: "certificate file without PEM", reason: "holds no PEM certificate",
		doc:  "tls: {certificates: [{cert: testdata/tls/garbage.pem, key: testdata/tls/a.key}]}\n" + minimal,
		want: `tls.certificates[0].cert: "testdata/tls/garbage.pem": holds no PEM certificate`},
	{name: "certificate that does not parse", reason: "the certificate does not parse: %s",
		doc:  "tls: {certificates: [{cert: testdata/tls/badcert.pem, key: testdata/tls/a.key}]}\n" + minimal,
		want: `tls.certificates[0].cert: "testdata/tls/badcert.pem": the certificate does not parse: x509: malformed certificate`},
	{name: "key that does not parse", reason: "holds no PEM private key that parses (PKCS #8, PKCS #1 or SEC 1)",
		doc:  "tls: {certificates: [{cert: testdata/tls/a.crt, key: testdata/tls/garbage.pem}]}\n" + minimal,
		want: `tls.certificates[0].key: "testdata/tls/garbage.pem": holds no PEM private key that parses (PKCS #8, PKCS #1 or SEC 1)`},
	{name: "key of another certificate", reason: "does not match the certificate in %s",
		doc:  "tls: {certificates: [{cert: testdata/tls/a.crt, key: testdata/tls/b.key}]}\n" + minimal,
		want: `tls.certificates[0].key: "testdata/tls/b.key": does not match the certificate in "testdata/tls/a.crt"`},
	{name: "client_ca missing", reason: "cannot read the file: %s",
		doc:  "tls: {client_ca: testdata/tls/none.pem}\n" + minimal,
		want: `tls.client_ca: "testdata/tls/none.pem": cannot read the file: no such file or directory`},
	{name: "client_ca without certificates", reason: "holds no PEM certificate",
		doc:  "tls: {client_ca: testdata/tls/a.key}\n" + minimal,
		want: `tls.client_ca: "testdata/tls/a.key": holds no PEM certificate`},
}

// warningMessages is one row per warning: a document that Parse accepts
// with exactly one warning line, want, of the reason.
var warningMessages = []struct {
	name, reason, doc, want string
}{
	{name: "expired certificate", reason: "the certificate expired on %s; it is served anyway",
		doc:  "tls: {certificates: [{cert: testdata/tls/expired.crt, key: testdata/tls/expired.key}]}\n" + minimal,
		want: `tls.certificates[0].cert: "testdata/tls/expired.crt": the certificate expired on 2001-01-01; it is served anyway`},
}

// TestWarnings checks each warning row's line exactly, and its shape.
func TestWarnings(t *testing.T) {
	for _, m := range warningMessages {
		t.Run(m.name, func(t *testing.T) {
			c, err := Parse([]byte(m.doc))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if len(c.Warnings) != 1 || c.Warnings[0] != m.want {
				t.Fatalf("warnings:\n got %q\nwant [%q]", c.Warnings, m.want)
			}
			_, _, why, ok := splitProblem(c.Warnings[0])
			if !ok {
				t.Fatalf("line %q is not `path: value: why`", c.Warnings[0])
			}
			if !formatPattern(m.reason).MatchString(why) {
				t.Errorf("why %q is not of the reason %q", why, m.reason)
			}
		})
	}
}

// aliasBomb is a document whose routes each merge the previous one's retry
// ten times: walking the last one naively would visit 10^8 mappings.
func aliasBomb() string {
	doc := "routes:\n  - {path_prefix: /0, backends: [http://127.0.0.1:1], retry: &r0 {attempts: 2}}\n"
	for i := 1; i <= 8; i++ {
		prev := "*r" + strconv.Itoa(i-1)
		doc += "  - {path_prefix: /" + strconv.Itoa(i) + ", backends: [http://127.0.0.1:1], retry: &r" + strconv.Itoa(i) +
			" {<<: [" + strings.Repeat(prev+", ", 9) + prev + "]}}\n"
	}
	return doc
}

// TestMessages checks each row's line exactly, its shape, and that its why
// is its reason's.
func TestMessages(t *testing.T) {
	for _, m := range messages {
		t.Run(m.name, func(t *testing.T) {
			var err error
			if m.load {
				_, err = Load(m.doc)
			} else {
				_, err = Parse([]byte(m.doc))
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %v (%T), want *Errors", err, err)
			}
			got := errs.Lines()
			if len(got) != 1 || got[0] != m.want {
				t.Fatalf("problems:\n got %q\nwant [%q]", got, m.want)
			}
			_, _, why, ok := splitProblem(got[0])
			if !ok {
				t.Fatalf("line %q is not `path: value: why`", got[0])
			}
			if !formatPattern(m.reason).MatchString(why) {
				t.Errorf("why %q is not of the reason %q", why, m.reason)
			}
		})
	}
}

// TestMessagesComplete fails when the source can produce a problem that no
// row of messages shows, or a row names a reason the source has not.
func TestMessagesComplete(t *testing.T) {
	src := sourceReasons(t)
	rows := map[string]bool{}
	for _, m := range messages {
		rows[m.reason] = true
		if _, ok := src[m.reason]; !ok {
			t.Errorf("row %q: reason %q is not in the source", m.name, m.reason)
		}
	}
	for _, m := range warningMessages {
		rows[m.reason] = true
		if _, ok := src[m.reason]; !ok {
			t.Errorf("warning row %q: reason %q is not in the source", m.name, m.reason)
		}
	}
	var missing []string
	for r, at := range src {
		if _, ok := unreachable[r]; !rows[r] && !ok {
			missing = append(missing, at+": "+strconv.Quote(r))
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("%s has no row in messages (messages_test.go)", m)
	}
	for r := range unreachable {
		if _, ok := src[r]; !ok {
			t.Errorf("unreachable reason %q is not in the source", r)
		}
	}
}

// formatPattern matches the texts a reason format produces: each verb
// stands for anything.
func formatPattern(format string) *regexp.Regexp {
	parts := regexp.MustCompile(`%[dqsv]`).Split(format, -1)
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile(`^` + strings.Join(parts, `.*`) + `$`)
}

// sourceReasons returns every reason of the package's non-test source, each
// with where it is. A reason is the constant format of a call to reason,
// errors.New or fmt.Errorf (all of the package's errors are problems). It
// also fails t at every place where a problem is produced another way:
// where a function's parameter named problem (always its last), or a
// FieldError's Problem, is given anything but reason(...), x.Error() (an
// error the package made with errors.New or fmt.Errorf) or, in a function
// that has one, the problem parameter itself.
func sourceReasons(t testing.TB) map[string]string {
	t.Helper()
	reasons, errs := scanReasons()
	for _, e := range errs {
		t.Error(e)
	}
	if len(reasons) == 0 {
		t.Fatal("no reasons found in the source")
	}
	return reasons
}

var scanReasons = sync.OnceValues(func() (map[string]string, []string) {
	var errs []string
	fset := token.NewFileSet()
	names, _ := filepath.Glob("*.go")
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			return nil, []string{err.Error()}
		}
		files = append(files, f)
	}

	// The functions that take a problem, by name.
	takesProblem := map[string]bool{}
	for _, f := range files {
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok {
				continue
			}
			var params []string
			for _, field := range fd.Type.Params.List {
				for _, n := range field.Names {
					params = append(params, n.Name)
				}
			}
			for i, p := range params {
				if p == "problem" {
					takesProblem[fd.Name.Name] = true
					if i != len(params)-1 {
						errs = append(errs, fset.Position(fd.Pos()).String()+": "+fd.Name.Name+": the problem parameter must be the last")
					}
				}
			}
		}
	}

	reasons := map[string]string{}
	for _, f := range files {
		for _, decl := range f.Decls {
			inProblemFunc := false
			if fd, ok := decl.(*ast.FuncDecl); ok {
				inProblemFunc = takesProblem[fd.Name.Name]
			}
			// allowed reports whether e is a way to give a problem.
			allowed := func(e ast.Expr) bool {
				switch e := e.(type) {
				case *ast.Ident:
					return inProblemFunc && e.Name == "problem"
				case *ast.CallExpr:
					switch fun := e.Fun.(type) {
					case *ast.Ident:
						return fun.Name == "reason"
					case *ast.SelectorExpr:
						_, isIdent := fun.X.(*ast.Ident)
						return fun.Sel.Name == "Error" && isIdent && len(e.Args) == 0
					}
				}
				return false
			}
			check := func(e ast.Expr) {
				if !allowed(e) {
					errs = append(errs, fset.Position(e.Pos()).String()+": a problem must be reason(...), err.Error() or the problem parameter")
				}
			}
			ast.Inspect(decl, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.CallExpr:
					name := ""
					switch fun := n.Fun.(type) {
					case *ast.Ident:
						name = fun.Name
					case *ast.SelectorExpr:
						name = fun.Sel.Name
						if x, ok := fun.X.(*ast.Ident); ok {
							name = x.Name + "." + name
						}
					}
					switch name {
					case "reason", "errors.New", "fmt.Errorf":
						lit, ok := n.Args[0].(*ast.BasicLit)
						if !ok || lit.Kind != token.STRING {
							errs = append(errs, fset.Position(n.Pos()).String()+": "+name+" needs a constant string as its format")
							return true
						}
						s, err := strconv.Unquote(lit.Value)
						if err != nil {
							errs = append(errs, fset.Position(n.Pos()).String()+": "+err.Error())
							return true
						}
						if _, ok := reasons[s]; !ok {
							reasons[s] = fset.Position(n.Pos()).String()
						}
					}
					if sel, ok := n.Fun.(*ast.SelectorExpr); ok {
						name = sel.Sel.Name
					}
					if takesProblem[name] && len(n.Args) > 0 {
						check(n.Args[len(n.Args)-1])
					}
				case *ast.CompositeLit:
					// Only FieldError has a Problem field; its literals are
					// keyed, also where the type is left out.
					for _, elt := range n.Elts {
						if kv, ok := elt.(*ast.KeyValueExpr); ok {
							if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Problem" {
								check(kv.Value)
							}
						} else if id, ok := n.Type.(*ast.Ident); ok && id.Name == "FieldError" {
							errs = append(errs, fset.Position(n.Pos()).String()+": a FieldError literal must name its fields")
						}
					}
				case *ast.AssignStmt:
					for i, lhs := range n.Lhs {
						if sel, ok := lhs.(*ast.SelectorExpr); ok && sel.Sel.Name == "Problem" && i < len(n.Rhs) {
							check(n.Rhs[i])
						}
					}
				}
				return true
			})
		}
	}
	return reasons, errs
})
