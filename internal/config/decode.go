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
	// nodes holds the value node of every path met, for validation to show
	// values as the document wrote them.
	nodes map[string]*yaml.Node
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
	return &decoder{pos: map[string]position{}, nodes: map[string]*yaml.Node{}, bad: map[string]bool{}}
}

// listenerWide lists, per section type, the keys that are not allowed in a
// route.
var listenerWide = map[reflect.Type]map[string]bool{
	reflect.TypeFor[Timeouts](): {"client_header": true, "client_idle": true, "shutdown_delay": true, "shutdown": true},
	reflect.TypeFor[Limits]():   {"max_header_bytes": true},
}

// failNode records a problem with the value n at path.
func (d *decoder) failNode(n *yaml.Node, path, problem string) {
	d.add(n, path, render(n), problem)
}

// add records a problem at the position of n; value is already rendered.
func (d *decoder) add(n *yaml.Node, path, value, problem string) {
	e := FieldError{Path: path, Value: value, Problem: problem}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
	d.bad[path] = true
}

// maxValue is about the longest value a problem line shows.
const maxValue = 100

// quote quotes a value for a problem line, shortening a long one.
func quote(s string) string {
	if len(s) > maxValue {
		s = s[:maxValue] + "..."
	}
	return strconv.Quote(s)
}

// render shows the value n for a problem line, as FieldError.Value says: a
// scalar quoted as written, a null as null, a list or mapping in flow form.
func render(n *yaml.Node) string {
	n = resolve(n)
	var b strings.Builder
	flow(&b, n)
	return b.String()
}

// flow writes n in flow form, with every scalar quoted and aliases as
// *name; past maxValue it writes ... in place of the remaining items.
func flow(b *strings.Builder, n *yaml.Node) {
	switch n.Kind {
	case yaml.ScalarNode:
		if isNull(n) {
			b.WriteString("null")
		} else {
			b.WriteString(quote(n.Value))
		}
	case yaml.AliasNode:
		b.WriteString("*")
		if plainKey(n.Value) {
			b.WriteString(n.Value)
		} else {
			b.WriteString(quote(n.Value))
		}
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			b.WriteString("null")
		} else {
			flow(b, n.Content[0])
		}
	case yaml.SequenceNode, yaml.MappingNode:
		open, end := "[", "]"
		if n.Kind == yaml.MappingNode {
			open, end = "{", "}"
		}
		b.WriteString(open)
		for i, c := range n.Content {
			switch {
			case i == 0:
			case n.Kind == yaml.MappingNode && i%2 == 1:
				b.WriteString(": ")
			default:
				b.WriteString(", ")
			}
			if b.Len() > maxValue {
				b.WriteString("...")
				break
			}
			flow(b, c)
		}
		b.WriteString(end)
	default:
		b.WriteString("null")
	}
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
		if tag := strings.TrimPrefix(n.ShortTag(), "!!"); plainTag(tag) {
			return "a " + tag + " value"
		}
		return "a value tagged " + quote(n.ShortTag())
	}
	return "something else"
}

// step counts one node visited, n at path, and reports whether the walk
// may go on. Past maxSteps the whole document is given up: validation
// reports nothing more.
func (d *decoder) step(n *yaml.Node, path string) bool {
	d.steps++
	if d.steps == maxSteps+1 {
		d.failNode(n, path, reason("the document is too large or uses too many aliases"))
		d.bad[""] = true
	}
	return d.steps <= maxSteps
}

// value decodes n onto v, the field at path.
func (d *decoder) value(n *yaml.Node, path string, v reflect.Value) {
	if !d.step(n, path) {
		return
	}
	n = resolve(n)
	if _, ok := d.pos[path]; !ok {
		d.pos[path] = position{n.Line, n.Column}
	}
	d.nodes[path] = n
	if isNull(n) {
		if v.Kind() == reflect.Struct && v.Type() != reflect.TypeFor[StatusRange]() || v.Kind() == reflect.Slice {
			return // an empty mapping or list key: keep the defaults
		}
		d.failNode(n, path, reason("no value; remove the key to get the default, or give a value"))
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
			d.failNode(n, path, reason("expected a URL or a mapping with url and weight, got %s", kindName(n)))
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
		case reflect.Float64:
			d.number(n, path, v)
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
		d.failNode(n, path, reason("expected a mapping, got %s", kindName(n)))
		return
	}
	fields := fieldIndex(v.Type())
	d.mapping(n, path, func(key string, kn, vn *yaml.Node) {
		p := joinKey(path, key)
		d.pos[p] = position{kn.Line, kn.Column}
		i, ok := fields[key]
		switch {
		case !ok:
			if best := nearKey(key, fields); best != "" {
				d.add(kn, p, render(vn), reason("unknown key (did you mean %s?)", best))
			} else {
				d.add(kn, p, render(vn), reason("unknown key"))
			}
		case d.inRoute && listenerWide[v.Type()][key]:
			d.add(kn, p, render(vn), reason("listener-wide setting, not allowed in a route"))
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
			if !d.step(n, path) {
				return
			}
			kn, vn := resolve(m.Content[i]), m.Content[i+1]
			if kn.Kind != yaml.ScalarNode {
				d.failNode(kn, path, reason("mapping keys must be strings, got %s", kindName(kn)))
				continue
			}
			if kn.ShortTag() == "!!merge" {
				merges = append(merges, vn)
				continue
			}
			if first, dup := seen[kn.Value]; dup {
				if !merged {
					d.add(kn, joinKey(path, kn.Value), render(vn), reason("duplicate key (first at line %d)", first.Line))
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
					d.failNode(src, path, reason("<< must merge a mapping or a list of mappings"))
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
		d.failNode(n, path, reason("expected a list, got %s", kindName(n)))
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
			d.nodes[p] = r
			d.failNode(r, p, reason("empty list item"))
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
		d.failNode(n, "routes", reason("expected a list of routes, got %s", kindName(n)))
		return
	}
	for i, item := range n.Content {
		p := "routes[" + strconv.Itoa(i) + "]"
		r := c.routeDefaults()
		item = resolve(item)
		d.pos[p] = position{item.Line, item.Column}
		if item.Kind != yaml.MappingNode {
			d.failNode(item, p, reason("expected a route mapping, got %s", kindName(item)))
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
		d.failNode(n, path, reason("expected a string, got %s", kindName(n)))
		return
	}
	// A plain scalar that YAML reads as a boolean is one of a few words, so
	// n.Value is safe to repeat in the problem.
	plain := n.Style&(yaml.TaggedStyle|yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0
	isBool := n.ShortTag() == "!!bool"
	switch {
	case path == "access_log" && plain && (isBool || ambiguous[n.Value]):
		d.failNode(n, path, reason("YAML reads a bare %s as a boolean; write access_log: \"off\" with the quotes to turn the access log off", n.Value))
	case isBool:
		d.failNode(n, path, reason("expected a string, got a boolean; quote it if you mean the word"))
	case plain && ambiguous[n.Value]:
		d.failNode(n, path, reason("YAML 1.1 reads a bare %s as a boolean; quote it", n.Value))
	default:
		v.SetString(n.Value)
	}
}

func (d *decoder) integer(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.failNode(n, path, reason("expected an integer, got %s", kindName(n)))
		return
	}
	var i int64
	if err := n.Decode(&i); err != nil {
		d.failNode(n, path, reason("integer out of range"))
		return
	}
	v.SetInt(i)
}

func (d *decoder) boolean(n *yaml.Node, path string, v reflect.Value) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		d.failNode(n, path, reason("expected true or false, got %s", kindName(n)))
		return
	}
	v.SetBool(b)
}

// isText reports whether n is a scalar that a unit type parses: anything
// but a boolean.
func isText(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() != "!!bool"
}

func (d *decoder) duration(n *yaml.Node, path string, p *Duration) {
	if !isText(n) {
		d.failNode(n, path, reason("expected a duration, got %s", kindName(n)))
		return
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		d.failNode(n, path, err.Error())
		return
	}
	*p = v
}

func (d *decoder) size(n *yaml.Node, path string, p *Size) {
	if !isText(n) {
		d.failNode(n, path, reason("expected a size, got %s", kindName(n)))
		return
	}
	if n.ShortTag() == "!!int" {
		var i int64
		if err := n.Decode(&i); err != nil {
			d.failNode(n, path, errSizeTooLarge.Error())
			return
		}
		if i < 0 {
			d.failNode(n, path, reason("must not be negative"))
			return
		}
		*p = Size(i)
		return
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		d.failNode(n, path, err.Error())
		return
	}
	*p = v
}

func (d *decoder) statusRange(n *yaml.Node, path string, p *StatusRange) {
	if !isText(n) {
		d.failNode(n, path, reason("expected a status, a range or a list of both, got %s", kindName(n)))
		return
	}
	v, err := ParseStatusRange(n.Value)
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
	if !plainKey(key) {
		key = quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// plainKey reports whether key is a plain name: letters, digits, '_' and
// '-', at least one.
func plainKey(key string) bool {
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return key != ""
}

// plainTag reports whether a tag's name can be shown as it is.
func plainTag(tag string) bool {
	return plainKey(strings.NewReplacer("!", "", ":", "", "/", "", ".", "").Replace(tag))
}

// nearKey returns a known key that is one or two edits away from key, for
// the problem of an unknown key to suggest; "" if none.
func nearKey(key string, fields map[string]int) string {
	best, bestDist := "", 3
	for name := range fields {
		if dist := editDistance(key, name); dist < bestDist || dist == bestDist && name < best {
			best, bestDist = name, dist
		}
	}
	if best != "" && bestDist < len(key) {
		return best
	}
	return ""
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
