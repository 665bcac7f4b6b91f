package e2e

import (
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsLinks reads every Markdown file of the repository and checks each
// relative link and image: its file part (before any #anchor or ?query)
// must name a file or folder that exists, inside the repository, and may
// not climb with "..": a link out of the repository (../shared/...) would
// be broken for anyone who only has the repository, so links to another
// folder start at the repository's root ("/examples/"). Links with a
// scheme (https:, mailto:) are not checked.
func TestDocsLinks(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.EqualFold(filepath.Ext(path), ".md") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n++
		rel, _ := filepath.Rel(root, path)
		for _, l := range markdownLinks(string(data)) {
			if problem := checkLink(root, path, l.dest); problem != "" {
				t.Errorf("%s:%d: link %q: %s", rel, l.line, l.dest, problem)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no Markdown files found")
	}
}

// mdLink is a link found in a Markdown file.
type mdLink struct {
	dest string
	line int
}

var (
	// fence opens or closes a fenced code block.
	fence = regexp.MustCompile("^ {0,3}(```|~~~)")
	// refDef is a link reference definition: [label]: destination.
	refDef = regexp.MustCompile(`^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)`)
	// htmlLink is a link or image written in HTML.
	htmlLink = regexp.MustCompile(`(?i)<(?:a|img|source)\b[^>]*?\s(?:href|src)\s*=\s*"([^"]*)"`)
)

// markdownLinks returns the destinations of the inline links and images
// ([text](dest), ![alt](dest)), reference definitions and HTML links of a
// Markdown document, leaving out fenced code blocks, indented code and code
// spans.
func markdownLinks(doc string) []mdLink {
	var links []mdLink
	inFence := ""
	for i, line := range strings.Split(doc, "\n") {
		if m := fence.FindStringSubmatch(line); m != nil {
			switch {
			case inFence == "":
				inFence = m[1]
			case inFence == m[1]:
				inFence = ""
			}
			continue
		}
		if inFence != "" || strings.HasPrefix(line, "    ") || strings.HasPrefix(line, "\t") {
			continue
		}
		line = blankCodeSpans(line)
		if m := refDef.FindStringSubmatch(line); m != nil {
			links = append(links, mdLink{strings.Trim(m[1], "<>"), i + 1})
			continue
		}
		for _, m := range htmlLink.FindAllStringSubmatch(line, -1) {
			links = append(links, mdLink{m[1], i + 1})
		}
		for j := 0; j+1 < len(line); j++ {
			if line[j] != ']' || line[j+1] != '(' {
				continue
			}
			if dest, ok := linkDest(line[j+2:]); ok {
				links = append(links, mdLink{dest, i + 1})
			}
		}
	}
	return links
}

// blankCodeSpans returns line with its code spans (text between two runs
// of the same number of backticks) turned into spaces: brackets in code are
// not links.
func blankCodeSpans(line string) string {
	b := []byte(line)
	for i := 0; i < len(b); {
		if b[i] != '`' {
			i++
			continue
		}
		n := 0
		for i+n < len(b) && b[i+n] == '`' {
			n++
		}
		end := -1
		for j := i + n; j < len(b); {
			if b[j] != '`' {
				j++
				continue
			}
			m := 0
			for j+m < len(b) && b[j+m] == '`' {
				m++
			}
			if m == n {
				end = j + m
				break
			}
			j += m
		}
		if end < 0 {
			i += n // no closing run: the backticks are text
			continue
		}
		for k := i; k < end; k++ {
			b[k] = ' '
		}
		i = end
	}
	return string(b)
}

// linkDest reads a link destination from s, which follows "](": an
// <angle-bracketed> one, or one up to the matching ")" or the first space
// (a title may follow it).
func linkDest(s string) (string, bool) {
	s = strings.TrimLeft(s, " ")
	if strings.HasPrefix(s, "<") {
		end := strings.IndexByte(s, '>')
		if end < 0 {
			return "", false
		}
		return s[1:end], true
	}
	depth := 0
	for k := 0; k < len(s); k++ {
		switch c := s[k]; {
		case c == '\\':
			k++
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == ')' || c == ' ':
			return s[:k], true
		}
	}
	return "", false
}

// hasScheme reports a link with a URL scheme (https:, mailto:).
var hasScheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)

// checkLink checks the link dest of the Markdown file at from, in the
// repository at root, and returns what is wrong with it, or "".
func checkLink(root, from, dest string) string {
	if dest == "" {
		return "empty link"
	}
	if hasScheme.MatchString(dest) || strings.HasPrefix(dest, "//") {
		return ""
	}
	file, _, _ := strings.Cut(dest, "#")
	file, _, _ = strings.Cut(file, "?")
	if file == "" {
		return "" // an anchor in the same file
	}
	unescaped, err := url.PathUnescape(file)
	if err != nil {
		return "bad escape: " + err.Error()
	}
	// The path is worked out from the repository's root without looking at
	// the disk, so that a link climbing out and back in through the
	// checkout's own folder name counts as outside too.
	dir, err := filepath.Rel(root, filepath.Dir(from))
	if err != nil {
		return err.Error()
	}
	for _, seg := range strings.Split(unescaped, "/") {
		if seg == ".." {
			// A climbing link is easy to get wrong and reads as a way out
			// of the repository: links to other folders start at its root.
			return `climbs with ".."; write it from the repository's root, starting with "/"`
		}
	}
	if strings.HasPrefix(unescaped, "/") {
		dir = "" // from the repository's root, as GitHub reads it
	}
	rel := filepath.Join(dir, filepath.FromSlash(unescaped))
	if _, err := os.Stat(filepath.Join(root, rel)); err != nil {
		return "no such file or folder: " + filepath.ToSlash(rel)
	}
	return ""
}

// TestDocsMarkdownLinks checks the link finder itself.
func TestDocsMarkdownLinks(t *testing.T) {
	doc := strings.Join([]string{
		"See [the reference](docs/configuration.md#routes) and ![chart](docs/bench/chart.svg \"title\").",
		"A [site](https://example.com/a_(b)) and a [section](#reload).",
		"Not a link: `arr[i](x)` in code, nor [brackets] alone.",
		"```go",
		"x := m[k](y)",
		"```",
		"    indented[code](z)",
		"[ref]: ../shared/SPEC.md",
		`<img src="docs/bench/chart.svg" alt="x"> and <a href="LICENSE">license</a>`,
		"[angle](<docs/a file.md>) [nested](docs/x_(1).md)",
	}, "\n")
	var got []string
	for _, l := range markdownLinks(doc) {
		got = append(got, l.dest)
	}
	want := []string{
		"docs/configuration.md#routes", "docs/bench/chart.svg",
		"https://example.com/a_(b)", "#reload",
		"../shared/SPEC.md",
		"docs/bench/chart.svg", "LICENSE",
		"docs/a file.md", "docs/x_(1).md",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("links found:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestDocsCheckLink checks the link checker on a small repository.
func TestDocsCheckLink(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"README.md", "docs/guide.md", "docs/my file.md", "examples/a.yaml"} {
		p := filepath.Join(root, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	from := filepath.Join(root, "docs", "guide.md")
	tests := []struct {
		name, dest string
		ok         bool
	}{
		{"sibling", "my%20file.md", true},
		{"root with anchor", "/README.md#install", true},
		{"folder from the root", "/examples/", true},
		{"from the root", "/examples/a.yaml", true},
		{"parent with anchor", "../README.md#install", false},
		{"parent folder", "../examples/", false},
		{"climbing inside a path", "/docs/../README.md", false},
		{"same-file anchor", "#section", true},
		{"scheme", "https://example.com/x", true},
		{"mailto", "mailto:someone@example.com", true},
		{"missing file", "missing.md", false},
		{"missing file with anchor", "/READ.md#install", false},
		{"outside the repository", "../../shared/SPEC.md", false},
		{"outside even if it exists", "../../" + filepath.Base(root) + "/README.md", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problem := checkLink(root, from, tt.dest)
			if (problem == "") != tt.ok {
				t.Errorf("checkLink(%q) = %q, want ok=%v", tt.dest, problem, tt.ok)
			}
		})
	}
}
