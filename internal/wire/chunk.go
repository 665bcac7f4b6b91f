package wire

import "strings"

// maxChunk bounds a chunk's size, far past any body limit.
const maxChunk = 1 << 62

// ParseChunkSize parses and validates a chunk-size line without its CRLF,
// as RFC 9112 section 7.1 and 7.1.1 say:
//
//	chunk-size [ chunk-ext ]
//	chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
//
// where ext-name is a token and ext-val a token or a quoted-string, and
// BWS is SP or HTAB (so whitespace only before a ";" or around an "=",
// never at the end). The size is at most 2^62. Any other byte (a CR, LF,
// NUL or other control character, an unterminated quoted string, an empty
// or non-token name, an "=" without a value) makes the line invalid. It
// allocates nothing; the extensions are checked, not kept.
func ParseChunkSize(line []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		d := hexVal[line[i]]
		if d > 15 {
			break
		}
		if n > maxChunk>>4 {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	if i == 0 || n > maxChunk {
		return 0, false
	}
	if i < len(line) && !validChunkExt(line[i:]) {
		return 0, false
	}
	return n, true
}

// validChunkExt reports whether b, the rest of a chunk-size line after the
// size's digits, is a valid chunk-ext (see ParseChunkSize).
func validChunkExt(b []byte) bool {
	i := 0
	for i < len(b) {
		// BWS ";" BWS ext-name: whitespace is only allowed before a ";",
		// so whitespace that runs to the end of the line is invalid.
		i = skipBWS(b, i)
		if i == len(b) || b[i] != ';' {
			return false
		}
		i = skipBWS(b, i+1)
		if i = skipToken(b, i); i < 0 {
			return false
		}
		// [ BWS "=" BWS ext-val ]: without an "=", whitespace is left to
		// the next round, where it must come before a ";".
		j := skipBWS(b, i)
		if j == len(b) || b[j] != '=' {
			continue
		}
		i = skipBWS(b, j+1)
		if i < len(b) && b[i] == '"' {
			i = skipQuoted(b, i)
		} else {
			i = skipToken(b, i)
		}
		if i < 0 {
			return false
		}
	}
	return true
}

// skipBWS returns the index of the first byte at or after i that is not SP
// or HTAB.
func skipBWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	return i
}

// skipToken returns the index past the token that starts at i, or -1 when
// none does.
func skipToken(b []byte, i int) int {
	j := i
	for j < len(b) && charClass[b[j]]&isTokenChar != 0 {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// skipQuoted returns the index past the quoted-string that starts with the
// DQUOTE at i, or -1 when it is unterminated or holds a byte it may not.
func skipQuoted(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch ch := b[i]; {
		case ch == '"':
			return i + 1
		case ch == '\\':
			if i++; i == len(b) || charClass[b[i]]&isPairChar == 0 {
				return -1
			}
		case charClass[ch]&isQDText == 0:
			return -1
		}
	}
	return -1
}

// ValidTrailerLine reports whether line, one line of a chunked body's
// trailer section without its CRLF, is a valid field line (RFC 9112
// section 7.1.2 and 5): a token name, a ":" right after it, then the value
// between optional SP and HTAB, with no control character other than HTAB
// and no DEL in it. An empty line (the section's end) is not a field line;
// neither is obs-fold (a line that starts with SP or HTAB), a bare CR, nor
// whitespace before the ":". It allocates nothing.
func ValidTrailerLine(line []byte) bool {
	i := skipToken(line, 0)
	if i < 0 || i == len(line) || line[i] != ':' {
		return false
	}
	for _, ch := range line[i+1:] {
		if charClass[ch]&isFieldChar == 0 {
			return false
		}
	}
	return true
}

// Classes of bytes in chunk extensions and field lines.
const (
	isTokenChar = 1 << iota // tchar (RFC 9110 section 5.6.2)
	isQDText                // qdtext: HTAB, SP, 0x21, 0x23-0x5B, 0x5D-0x7E, obs-text
	isPairChar              // after "\" in a quoted-pair: HTAB, SP, VCHAR, obs-text
	isFieldChar             // in a field value: HTAB, SP, VCHAR, obs-text
)

// charClass holds each byte's classes; hexVal each byte's value as a hex
// digit, or 0xff.
var charClass, hexVal = func() (cl, hv [256]uint8) {
	for c := 0; c < 256; c++ {
		hv[c] = 0xff
		switch {
		case c >= '0' && c <= '9':
			hv[c] = uint8(c - '0')
		case c >= 'a' && c <= 'f':
			hv[c] = uint8(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			hv[c] = uint8(c - 'A' + 10)
		}
		vchar := c >= 0x21 && c <= 0x7e
		obs := c >= 0x80
		if c == '\t' || c == ' ' || vchar || obs {
			cl[c] |= isPairChar | isFieldChar
			if c != '"' && c != '\\' {
				cl[c] |= isQDText
			}
		}
		if vchar && !strings.ContainsRune(`"(),/:;<=>?@[\]{}`, rune(c)) {
			cl[c] |= isTokenChar
		}
	}
	return
}()
