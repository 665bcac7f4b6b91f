package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// FieldError is one problem in a configuration. Its Error form is always
// `<path>: <value>: <problem>`, e.g.
// `routes[1].backends[0]: "htp://x": scheme must be http or https`.
type FieldError struct {
	// Path is the field path, e.g. "routes[1].backends[0]" or "listen"; ""
	// for a problem with the whole document or file, which Error shows as
	// (root).
	Path string
	// Value is the bad value as printed (see render), never "" once made
	// by this package:
	//   - a scalar is its text as written in the file, quoted with %q:
	//     "htp://x", and numbers and durations too, "0", "1m" (so that a
	//     value never runs into the text around it);
	//   - a key written with no value, ~ or null is null;
	//   - a list or a mapping is written in flow form, its scalars quoted,
	//     cut with ... when long: ["a", "b"], {"weight": "2"};
	//   - a key the document leaves out, such as a required path_prefix, is
	//     (missing) (Error shows an empty Value so too);
	//   - a value the document does not write but inherits or derives (a
	//     default, a route's default name) is the value in effect, quoted;
	//   - for the whole document (Path ""), the text of the line a YAML
	//     syntax problem names, the document in flow form, or, when the file
	//     cannot be read, its name.
	Value string
	// Problem says what is wrong, e.g. "scheme must be http or https". It is
	// written with reason; see messages_test.go.
	Problem string
	// Line and Column locate the problem in the YAML file, from 1; 0 when
	// unknown. They are not part of Error.
	Line, Column int
	// Err is the underlying error, if any (e.g. from reading the file).
	Err error
}

const (
	// rootPath is how Error shows the path of a problem with the whole
	// document or file.
	rootPath = "(root)"
	// missingValue is how a problem line shows the value of a key that the
	// document leaves out.
	missingValue = "(missing)"
)

// Error returns the problem as one line: path, value and problem.
func (e *FieldError) Error() string {
	path, value := e.Path, e.Value
	if path == "" {
		path = rootPath
	}
	if value == "" {
		value = missingValue
	}
	return path + ": " + value + ": " + e.Problem
}

// reason formats the words of a problem, the part after the value. Every
// problem the package reports is written by reason with a constant format,
// or, in the helpers that return an error, by errors.New or fmt.Errorf with
// a constant text. messages_test.go finds every such format in the source
// and fails unless its table has a row that produces it.
func reason(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// Unwrap returns Err.
func (e *FieldError) Unwrap() error { return e.Err }

// Errors is every problem found in a configuration, in document order (the
// problems of the whole file, such as a missing routes key, come last). Parse
// and Load return it as their error; it always holds at least one problem.
type Errors struct {
	// List holds the problems.
	List []FieldError
}

// Error returns the problems one a line, joined by "\n".
func (e *Errors) Error() string { return strings.Join(e.Lines(), "\n") }

// Lines returns the problems one a line, as -check prints them.
func (e *Errors) Lines() []string {
	lines := make([]string, len(e.List))
	for i := range e.List {
		lines[i] = e.List[i].Error()
	}
	return lines
}

// Unwrap returns each problem as an error, for errors.Is and errors.As.
func (e *Errors) Unwrap() []error {
	errs := make([]error, len(e.List))
	for i := range e.List {
		errs[i] = &e.List[i]
	}
	return errs
}

// sortErrors orders errs by position, keeping the order of equal positions;
// problems without a position go last.
func sortErrors(errs []FieldError) {
	key := func(e FieldError) int {
		if e.Line == 0 {
			return int(^uint(0) >> 1)
		}
		return e.Line
	}
	slices.SortStableFunc(errs, func(a, b FieldError) int {
		if c := cmp.Compare(key(a), key(b)); c != 0 {
			return c
		}
		return cmp.Compare(a.Column, b.Column)
	})
}
