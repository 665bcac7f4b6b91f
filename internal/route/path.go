package route

import "strings"

// CleanPath returns p with its dot segments removed as RFC 3986 section
// 5.2.4 says, after decoding "%2E" and "%2e" to ".". Other percent-escapes
// are kept as they are (an encoded slash is not a segment separator), and
// so are repeated and trailing slashes. p must start with "/". CleanPath does
// not allocate when p has nothing to clean.
func CleanPath(p string) string {
	if !needsClean(p) {
		return p
	}
	if strings.Contains(p, "%2") {
		p = strings.NewReplacer("%2e", ".", "%2E", ".").Replace(p)
	}
	return removeDotSegments(p)
}

// needsClean reports whether p may hold a dot segment, plain or encoded.
func needsClean(p string) bool {
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '.':
			if i > 0 && p[i-1] == '/' {
				return true
			}
		case '%':
			if i+2 < len(p) && p[i+1] == '2' && (p[i+2] == 'e' || p[i+2] == 'E') {
				return true
			}
		}
	}
	return false
}

// removeDotSegments is RFC 3986 section 5.2.4 for an absolute path.
func removeDotSegments(in string) string {
	out := make([]byte, 0, len(in))
	for len(in) > 0 {
		switch {
		case strings.HasPrefix(in, "../"):
			in = in[3:]
		case strings.HasPrefix(in, "./"):
			in = in[2:]
		case strings.HasPrefix(in, "/./"):
			in = in[2:]
		case in == "/.":
			in = "/"
		case strings.HasPrefix(in, "/../"):
			in = in[3:]
			out = dropLastSegment(out)
		case in == "/..":
			in = "/"
			out = dropLastSegment(out)
		case in == "." || in == "..":
			in = ""
		default:
			// Move the first segment, with its leading slash, to out.
			i := strings.IndexByte(in[1:], '/')
			if i < 0 {
				out = append(out, in...)
				in = ""
			} else {
				out = append(out, in[:i+1]...)
				in = in[i+1:]
			}
		}
	}
	if len(out) == 0 {
		return "/"
	}
	return string(out)
}

func dropLastSegment(out []byte) []byte {
	i := len(out) - 1
	for i >= 0 && out[i] != '/' {
		i--
	}
	if i < 0 {
		return out[:0]
	}
	return out[:i]
}
