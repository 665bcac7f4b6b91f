package config

import (
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxSteps bounds the nodes one decode visits. A real configuration has a
// few thousand; aliases can make a small file expand enormously (the
// "billion laughs" attack), so the walk stops with an error past this.
const maxSteps = 1_000_000

// position is a place in the YAML file.
type position struct{ line, column int }

// decoder walks a yaml.Node tree onto a Config that already holds the
// defaults. It never stops at the first problem: each one is recorded with
// its path and the walk goes on with the next key, leaving the default in
// place of a bad value.
type decoder struct {
	errs []FieldError
	// pos holds the position of every path met, to place the problems that
	// validation finds later.
	pos map[string]position
	// bad holds the paths that had a decode problem; validation skips them
	// and their children so as not to report one mistake twice.
	bad map[string]bool
	// inRoute is set while a route's mapping is decoded, where the
	// listener-wide keys are errors.
	inRoute bool
	steps   int
	// routes is the node of the routes key, decoded last, once the
	// top-level sections that routes inherit are known.
	routes *yaml.Node
}

func newDecoder() *decoder {
	return &decoder{pos: map[string]position{}, bad: map[string]bool{}}
}

// listenerWide lists, per section type, the keys that are not allowed in a
// route.
var listenerWide = map[reflect.Type]map[string]bool{
	reflect.TypeFor[Timeouts](): {"client_header": true, "client_idle": true, "shutdown_delay": true, "shutdown": true},
	reflect.TypeFor[Limits]():   {"max_header_bytes": true},
}

// fail records a problem at path that is not about one value, such as an
// unknown key.
func (d *decoder) fail(n *yaml.Node, path, problem string) {
	d.add(n, path, "", problem)
}

// failNode records a problem with the value of n, quoting n's text when it
// is a scalar.
func (d *decoder) failNode(n *yaml.Node, path, problem string) {
	value := ""
	if n.Kind == yaml.ScalarNode {
		value = quote(n.Value)
	}
	d.add(n, path, value, problem)
}

// add records a problem; value is already quoted, or "".
func (d *decoder) add(n *yaml.Node, path, value, problem string) {
	e := FieldError{Path: path, Value: value, Problem: problem}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
	d.bad[path] = true
}

// quote quotes a value for a problem line, shortening a long one.
func quote(s string) string {
	const max = 100
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}

// resolve follows aliases to the node they stand for.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 1000; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// kindName describes what n holds, for "expected X, got Y".
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return "a string"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "no value"
		}
		return "a " + strings.TrimPrefix(n.ShortTag(), "!!") + " value"
	}
	return "something else"
}

// step counts one node visited and reports whether the walk may go on.
func (d *decoder) step(n *yaml.Node) bool {
	d.steps++
	if d.steps == maxSteps+1 {
		d.fail(n, "", "the document is too large or uses too many aliases")
	}
	return d.steps <= maxSteps
}

// value decodes n onto v, the field at path.
func (d *decoder) value(n *yaml.Node, path string, v reflect.Value) {
	if !d.step(n) {
		return
	}
	n = resolve(n)
	if _, ok := d.pos[path]; !ok {
		d.pos[path] = position{n.Line, n.Column}
	}
	if isNull(n) {
		if v.Kind() == reflect.Struct && v.Type() != reflect.TypeFor[StatusRange]() || v.Kind() == reflect.Slice {
			return // an empty mapping or list key: keep the defaults
		}
		d.fail(n, path, "no value; remove the key to get the default, or give a value")
		return
	}
	switch p := v.Addr().Interface().(type) {
	case *Duration:
		d.duration(n, path, p)
	case *Size:
		d.size(n, path, p)
	case *StatusRange:
		d.statusRange(n, path, p)
	case *Backend:
		if n.Kind == yaml.ScalarNode {
			d.str(n, path, reflect.ValueOf(&p.URL).Elem())
		} else if n.Kind == yaml.MappingNode {
			d.structure(n, path, v)
		} else {
			d.failNode(n, path, "expected a URL or a mapping with url and weight, got "+kindName(n))
		}
	case *[]Route:
		d.routes = n
	default:
		switch v.Kind() {
		case reflect.Struct:
			d.structure(n, path, v)
		case reflect.Slice:
			d.list(n, path, v)
		case reflect.String:
			d.str(n, path, v)
		case reflect.Int:
			d.integer(n, path, v)
		case reflect.Bool:
			d.boolean(n, path, v)
		default:
			panic("config: no decoder for " + v.Type().String())
		}
	}
}

// structure decodes the mapping n onto the struct v, by yaml tags.
func (d *decoder) structure(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.failNode(n, path, "expected a mapping, got "+kindName(n))
		return
	}
	fields := fieldIndex(v.Type())
	d.mapping(n, path, func(key string, kn, vn *yaml.Node) {
		p := joinKey(path, key)
		d.pos[p] = position{kn.Line, kn.Column}
		i, ok := fields[key]
		switch {
		case !ok:
			d.fail(kn, p, unknownKey(key, fields))
		case d.inRoute && listenerWide[v.Type()][key]:
			d.fail(kn, p, "listener-wide setting, not allowed in a route")
		default:
			d.value(vn, p, v.Field(i))
		}
	})
}

// mapping calls each for every key of the mapping n, once per key. Keys
// merged in with YAML's "<<" come after the mapping's own keys and never
// override them; a key given twice is an error.
func (d *decoder) mapping(n *yaml.Node, path string, each func(key string, kn, vn *yaml.Node)) {
	seen := map[string]*yaml.Node{}
	var walk func(m *yaml.Node, merged bool, depth int)
	walk = func(m *yaml.Node, merged bool, depth int) {
		var merges []*yaml.Node
		for i := 0; i+1 < len(m.Content); i += 2 {
			if !d.step(m) {
				return
			}
			kn, vn := resolve(m.Content[i]), m.Content[i+1]
			if kn.Kind != yaml.ScalarNode {
				d.failNode(kn, path, "mapping keys must be strings, got "+kindName(kn))
				continue
			}
			if kn.ShortTag() == "!!merge" {
				merges = append(merges, vn)
				continue
			}
			if first, dup := seen[kn.Value]; dup {
				if !merged {
					d.fail(kn, joinKey(path, kn.Value), "duplicate key (first at line "+strconv.Itoa(first.Line)+")")
				}
				continue
			}
			seen[kn.Value] = kn
			each(kn.Value, kn, vn)
		}
		for _, mn := range merges {
			mn = resolve(mn)
			srcs := []*yaml.Node{mn}
			if mn.Kind == yaml.SequenceNode {
				srcs = mn.Content
			}
			for _, src := range srcs {
				src = resolve(src)
				if src.Kind != yaml.MappingNode || depth > 32 {
					d.failNode(src, path, "<< must merge a mapping or a list of mappings")
					continue
				}
				walk(src, true, depth+1)
			}
		}
	}
	walk(n, false, 0)
}

// list decodes the sequence n into a new slice stored in v.
func (d *decoder) list(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		d.failNode(n, path, "expected a list, got "+kindName(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), 0, len(n.Content))
	for i, item := range n.Content {
		p := path + "[" + strconv.Itoa(i) + "]"
		e := reflect.New(v.Type().Elem()).Elem()
		if b, ok := e.Addr().Interface().(*Backend); ok {
			b.Weight = defaultWeight
		}
		if r := resolve(item); isNull(r) {
			d.pos[p] = position{r.Line, r.Column}
			d.fail(r, p, "empty list item")
		} else {
			d.value(item, p, e)
		}
		s = reflect.Append(s, e)
	}
	v.Set(s)
}

// decodeRoutes decodes the routes key onto c.Routes. Each route starts as a
// copy of the top-level sections, so its own keys override only themselves.
func (d *decoder) decodeRoutes(c *Config) {
	n := d.routes
	if n == nil {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.failNode(n, "routes", "expected a list of routes, got "+kindName(n))
		return
	}
	for i, item := range n.Content {
		p := "routes[" + strconv.Itoa(i) + "]"
		r := c.routeDefaults()
		item = resolve(item)
		d.pos[p] = position{item.Line, item.Column}
		if item.Kind != yaml.MappingNode {
			d.failNode(item, p, "expected a route mapping, got "+kindName(item))
		} else {
			d.inRoute = true
			d.value(item, p, reflect.ValueOf(&r).Elem())
			d.inRoute = false
		}
		c.Routes = append(c.Routes, r)
	}
}

// ambiguous are the plain words that YAML 1.1 reads as booleans. yaml.v3
// reads them as strings, but other YAML tools do not, so a string field
// refuses them unquoted.
var ambiguous = map[string]bool{
	"y": true, "Y": true, "yes": true, "Yes": true, "YES": true,
	"n": true, "N": true, "no": true, "No": true, "NO": true,
	"on": true, "On": true, "ON": true,
	"off": true, "Off": true, "OFF": true,
}

// str decodes a scalar as text. Numbers are taken as written; booleans and
// the YAML 1.1 boolean words must be quoted.
func (d *decoder) str(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		d.failNode(n, path, "expected a string, got "+kindName(n))
		return
	}
	plain := n.Style&(yaml.TaggedStyle|yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0
	isBool := n.ShortTag() == "!!bool"
	switch {
	case path == "access_log" && (isBool || plain && ambiguous[n.Value]):
		d.failNode(n, path, "YAML reads a bare "+n.Value+" as a boolean; write access_log: \"off\" with the quotes to turn the access log off")
	case isBool:
		d.failNode(n, path, "expected a string, got a boolean; quote it if you mean the word")
	case plain && ambiguous[n.Value]:
		d.failNode(n, path, "YAML 1.1 reads a bare "+n.Value+" as a boolean; quote it")
	default:
		v.SetString(n.Value)
	}
}

func (d *decoder) integer(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.failNode(n, path, "expected an integer, got "+kindName(n))
		return
	}
	var i int64
	if err := n.Decode(&i); err != nil {
		d.failNode(n, path, "integer out of range")
		return
	}
	v.SetInt(i)
}

func (d *decoder) boolean(n *yaml.Node, path string, v reflect.Value) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		d.failNode(n, path, "expected true or false, got "+kindName(n))
		return
	}
	v.SetBool(b)
}

// text returns the text of a scalar that a unit type parses, or reports why
// n is not one.
func (d *decoder) text(n *yaml.Node, path, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!bool" {
		d.failNode(n, path, "expected "+what+", got "+kindName(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) duration(n *yaml.Node, path string, p *Duration) {
	s, ok := d.text(n, path, "a duration")
	if !ok {
		return
	}
	v, err := ParseDuration(s)
	if err != nil {
		d.failNode(n, path, err.Error())
		return
	}
	*p = v
}

func (d *decoder) size(n *yaml.Node, path string, p *Size) {
	s, ok := d.text(n, path, "a size")
	if !ok {
		return
	}
	if n.ShortTag() == "!!int" {
		var i int64
		if err := n.Decode(&i); err != nil {
			d.failNode(n, path, errSizeTooLarge.Error())
			return
		}
		if i < 0 {
			d.failNode(n, path, "must not be negative")
			return
		}
		*p = Size(i)
		return
	}
	v, err := ParseSize(s)
	if err != nil {
		d.failNode(n, path, err.Error())
		return
	}
	*p = v
}

func (d *decoder) statusRange(n *yaml.Node, path string, p *StatusRange) {
	s, ok := d.text(n, path, "a status, a range or a list of both")
	if !ok {
		return
	}
	v, err := ParseStatusRange(s)
	if err != nil {
		d.failNode(n, path, err.Error())
		return
	}
	*p = v
}

// fieldIndex maps the yaml names of t's fields to their indexes.
func fieldIndex(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		m[name] = i
	}
	return m
}

// joinKey appends key to path, quoting a key that is not a plain name so
// that a strange key cannot garble the problem line.
func joinKey(path, key string) string {
	plain := key != ""
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			plain = false
			break
		}
	}
	if !plain {
		key = quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// unknownKey words the problem of an unknown key, suggesting a known key
// that is one or two edits away.
func unknownKey(key string, fields map[string]int) string {
	best, bestDist := "", 3
	for name := range fields {
		if dist := editDistance(key, name); dist < bestDist || dist == bestDist && name < best {
			best, bestDist = name, dist
		}
	}
	if best != "" && bestDist < len(key) {
		return "unknown key (did you mean " + best + "?)"
	}
	return "unknown key"
}

// editDistance is the Levenshtein distance of a and b, capped for long
// inputs.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
