package config

import (
	"cmp"
	"slices"
	"strings"
)

// FieldError is one problem in a configuration. Its Error form is
// `<path>: <value>: <problem>`, e.g.
// `routes[1].backends[0]: "htp://x": scheme must be http or https`, with the
// path or the value left out when there is none.
type FieldError struct {
	// Path is the field path, e.g. "routes[1].backends[0]" or "listen"; ""
	// for a problem with the whole file.
	Path string
	// Value is the bad value as printed, already quoted ("\"htp://x\""); ""
	// when the problem is not about one value (an unknown key, a missing
	// field).
	Value string
	// Problem says what is wrong, e.g. "scheme must be http or https".
	Problem string
	// Line and Column locate the problem in the YAML file, from 1; 0 when
	// unknown. They are not part of Error.
	Line, Column int
	// Err is the underlying error, if any (e.g. from reading the file).
	Err error
}

// Error returns the problem as one line.
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	if e.Value != "" {
		b.WriteString(e.Value)
		b.WriteString(": ")
	}
	b.WriteString(e.Problem)
	return b.String()
}

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
