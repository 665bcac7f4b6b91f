package main

import (
	"path/filepath"
	"strings"
)

// userCommand returns the command line argv (os.Args) as a user would type
// it to make the run again. A binary that go run built lives in the go
// command's cache (…/go-build/…/bench), a path nobody types: it becomes
// "go run ./bench". The flags follow as given, but for -out, since where
// the results were written is no part of how they were made.
func userCommand(argv []string) string {
	if len(argv) == 0 {
		return "go run ./bench"
	}
	words := []string{argv[0]}
	if strings.Contains(filepath.ToSlash(argv[0]), "/go-build") {
		words = []string{"go", "run", "./bench"}
	}
	args := argv[1:]
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == "out" {
			if !hasValue {
				i++ // the value is the next argument
			}
			continue
		}
		words = append(words, shellQuote(a))
	}
	return strings.Join(words, " ")
}

// shellQuote quotes s for a POSIX shell when it holds anything but
// characters that need no quoting.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./=,:@%+-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
