package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Load reads the YAML file at path and returns it as Parse does. A file that
// cannot be read is an *Errors too, whose one FieldError wraps the os error
// and shows the file name as its value.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		why := err.Error()
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			why = pe.Err.Error() // the operation and the path are said already
		}
		return nil, &Errors{List: []FieldError{{Value: quote(path), Problem: reason("cannot read the file: %s", why), Err: err}}}
	}
	return Parse(data)
}

// Parse decodes a YAML configuration strictly, applies the defaults and
// validates it. On success it returns the complete Config (every default
// filled in, route overrides applied, TrustedPrefixes parsed). Otherwise it
// returns a nil Config and an *Errors holding every problem found, decode and
// validation problems together, in document order.
func Parse(data []byte) (*Config, error) {
	root, perr := parseYAML(data)
	if perr != nil {
		return nil, &Errors{List: []FieldError{*perr}}
	}
	c := defaults()
	d := newDecoder()
	if root != nil {
		d.value(root, "", reflect.ValueOf(c).Elem())
	}
	d.decodeRoutes(c)
	provision(c)
	errs := d.errs
	for _, e := range validate(c, d) {
		e.Line, e.Column = d.position(e.Path)
		errs = append(errs, e)
	}
	if len(errs) > 0 {
		sortErrors(errs)
		return nil, &Errors{List: errs}
	}
	return c, nil
}

// parseYAML parses data into its root node; nil for an empty document.
func parseYAML(data []byte) (root *yaml.Node, ferr *FieldError) {
	defer func() {
		// The YAML library reports its errors by panicking internally; should
		// one escape, it is still only a bad file.
		if r := recover(); r != nil {
			root, ferr = nil, &FieldError{Value: quote(string(data)), Problem: reason("yaml: %s", fmt.Sprint(r))}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, syntaxError(data, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, &FieldError{
			Value:   quote(lineText(data, extra.Line)),
			Problem: reason("the file holds more than one YAML document; write one"),
			Line:    extra.Line,
		}
	case !errors.Is(err, io.EOF):
		return nil, syntaxError(data, err)
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		return doc.Content[0], nil
	}
	return &doc, nil
}

// parserProblems are the problems the YAML library's parser (not its
// scanner) reports. For these it prints the line of its mark, which counts
// from 0 (and prints none for the first line); for the scanner's problems,
// the line counting from 1.
var parserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"did not find expected node content":     true,
	"did not find expected key":              true,
	"did not find expected '-' indicator":    true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found duplicate %TAG directive":         true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

var (
	lineNumber = regexp.MustCompile(`^line ([0-9]+): `)
	anchorName = regexp.MustCompile(`anchor '([^']*)'`)
)

// syntaxError turns an error of the YAML library into a problem of the
// whole document: the value is the text of the line it names (or, when it
// names none, the line found by other means, else the first), and the line
// number in the problem counts from 1 whichever part of the library spoke.
func syntaxError(data []byte, err error) *FieldError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := lineNumber.FindStringSubmatch(msg); m != nil {
		msg = msg[len(m[0]):]
		line, _ = strconv.Atoi(m[1])
		if parserProblems[msg] {
			line++
		}
	} else if m := anchorName.FindStringSubmatch(msg); m != nil {
		line = lineOf(data, bytes.Index(data, []byte("*"+m[1])))
	} else {
		line = lineOf(data, badByte(data))
	}
	line = max(1, min(line, lastLine(data)))
	return &FieldError{
		Value:   quote(lineText(data, line)),
		Problem: reason("yaml: line %d: %s", line, msg),
		Line:    line,
		Err:     err,
	}
}

// badByte returns the offset of the first byte of data that YAML does not
// allow (invalid UTF-8, or a control character other than tab, line feed
// and carriage return), or -1.
func badByte(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1,
			r < 0x20 && r != '\t' && r != '\n' && r != '\r',
			r >= 0x7f && r < 0xa0 && r != 0x85,
			r >= 0xd800 && r < 0xe000, r == 0xfffe, r == 0xffff:
			return i
		}
		i += size
	}
	return -1
}

// lineOf returns the line, from 1, of the byte at offset i of data; 0 for a
// negative i.
func lineOf(data []byte, i int) int {
	if i < 0 {
		return 0
	}
	return bytes.Count(data[:i], []byte("\n")) + 1
}

// lastLine returns the number of the last line of data that holds
// anything, at least 1.
func lastLine(data []byte) int {
	return max(1, lineOf(data, len(bytes.TrimRight(data, "\n"))))
}

// lineText returns line n of data, from 1, without surrounding spaces.
func lineText(data []byte, n int) string {
	for i, l := range bytes.Split(data, []byte("\n")) {
		if i == n-1 {
			return string(bytes.TrimSpace(l))
		}
	}
	return ""
}

// isBad reports whether path, or a path above it, had a decode problem.
func (d *decoder) isBad(path string) bool {
	for p := path; ; p = parentPath(p) {
		if d.bad[p] {
			return true
		}
		if p == "" {
			return false
		}
	}
}

// position returns the position of path, or of the nearest path above it
// that the document holds; 0, 0 if none.
func (d *decoder) position(path string) (line, column int) {
	for p := path; p != ""; p = parentPath(p) {
		if pos, ok := d.pos[p]; ok {
			return pos.line, pos.column
		}
	}
	return 0, 0
}

// parentPath returns the path above p: "routes[0]" for "routes[0].name",
// "routes" for "routes[0]", "" for "routes".
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// MarshalJSON writes the route as it is written in YAML, with every default
// filled in: timeouts and limits hold only the keys a route may set.
func (r Route) MarshalJSON() ([]byte, error) {
	type timeouts struct {
		ClientBody      Duration `json:"client_body"`
		UpstreamConnect Duration `json:"upstream_connect"`
		UpstreamHeader  Duration `json:"upstream_header"`
		UpstreamBody    Duration `json:"upstream_body"`
	}
	type limits struct {
		MaxRequestBody  Size `json:"max_request_body"`
		MaxResponseBody Size `json:"max_response_body"`
	}
	backends := r.Backends
	if backends == nil {
		backends = []Backend{}
	}
	return json.Marshal(struct {
		Name        string         `json:"name"`
		PathPrefix  string         `json:"path_prefix"`
		Host        string         `json:"host"`
		StripPrefix bool           `json:"strip_prefix"`
		Balancer    string         `json:"balancer"`
		HashKey     string         `json:"hash_key,omitempty"`
		SlowStart   Duration       `json:"slow_start"`
		Backends    []Backend      `json:"backends"`
		Timeouts    timeouts       `json:"timeouts"`
		Limits      limits         `json:"limits"`
		Health      Health         `json:"health"`
		Retry       Retry          `json:"retry"`
		RateLimit   RateLimit      `json:"rate_limit"`
		Breaker     CircuitBreaker `json:"circuit_breaker"`
	}{
		Name:        r.Name,
		PathPrefix:  r.PathPrefix,
		Host:        r.Host,
		StripPrefix: r.StripPrefix,
		Balancer:    r.Balancer,
		HashKey:     r.HashKey,
		SlowStart:   r.SlowStart,
		Backends:    backends,
		Timeouts: timeouts{
			ClientBody:      r.Timeouts.ClientBody,
			UpstreamConnect: r.Timeouts.UpstreamConnect,
			UpstreamHeader:  r.Timeouts.UpstreamHeader,
			UpstreamBody:    r.Timeouts.UpstreamBody,
		},
		Limits: limits{
			MaxRequestBody:  r.Limits.MaxRequestBody,
			MaxResponseBody: r.Limits.MaxResponseBody,
		},
		Health:    r.Health,
		Retry:     r.Retry,
		RateLimit: r.RateLimit,
		Breaker:   r.CircuitBreaker,
	})
}
