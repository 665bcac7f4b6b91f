package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads the YAML file at path and returns it as Parse does. A file that
// cannot be read is an *Errors too, whose one FieldError wraps the os error.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Errors{List: []FieldError{{Problem: err.Error(), Err: err}}}
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
			root, ferr = nil, &FieldError{Problem: fmt.Sprint("yaml: ", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, &FieldError{Problem: err.Error(), Err: err}
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, &FieldError{Problem: "the file holds more than one YAML document; write one", Line: extra.Line}
	case !errors.Is(err, io.EOF):
		return nil, &FieldError{Problem: err.Error(), Err: err}
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		return doc.Content[0], nil
	}
	return &doc, nil
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
		Name        string    `json:"name"`
		PathPrefix  string    `json:"path_prefix"`
		Host        string    `json:"host"`
		StripPrefix bool      `json:"strip_prefix"`
		Balancer    string    `json:"balancer"`
		Backends    []Backend `json:"backends"`
		Timeouts    timeouts  `json:"timeouts"`
		Limits      limits    `json:"limits"`
		Health      Health    `json:"health"`
		Retry       Retry     `json:"retry"`
	}{
		Name:        r.Name,
		PathPrefix:  r.PathPrefix,
		Host:        r.Host,
		StripPrefix: r.StripPrefix,
		Balancer:    r.Balancer,
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
		Health: r.Health,
		Retry:  r.Retry,
	})
}
