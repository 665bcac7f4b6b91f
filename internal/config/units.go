package config

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String returns d in Go's form: "10s", "250ms", "1m0s".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText returns d's String form, so that JSON shows it as a string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a Go duration string; a negative one is an error.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ParseDuration parses a Go duration string ("250ms", "5s", "1m", "0") and
// rejects a negative one.
func ParseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("not a duration (write a Go duration such as 250ms, 5s or 1m)")
	}
	if v < 0 {
		return 0, errors.New("must not be negative")
	}
	return Duration(v), nil
}

var (
	errSizeTooLarge = fmt.Errorf("too large (at most %d bytes)", int64(math.MaxInt64))
	errNotSize      = errors.New("not a size (write bytes as an integer, or a number with a unit such as 64KiB or 16MiB)")
)

// sizeUnits are the units of Size, largest first within each family, in the
// order String tries them.
var sizeUnits = []struct {
	name string
	n    int64
}{
	{"GiB", 1 << 30},
	{"GB", 1e9},
	{"MiB", 1 << 20},
	{"MB", 1e6},
	{"KiB", 1 << 10},
	{"KB", 1e3},
	{"B", 1},
}

// String returns s with the largest unit that divides it exactly ("16MiB",
// "64KiB", "1GB"), else in bytes ("1500B"); zero is "0B".
func (s Size) String() string {
	if s > 0 {
		for _, u := range sizeUnits {
			if int64(s)%u.n == 0 {
				return strconv.FormatInt(int64(s)/u.n, 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// MarshalText returns s's String form, so that JSON shows it as a string.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a size as ParseSize does.
func (s *Size) UnmarshalText(text []byte) error {
	v, err := ParseSize(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// ParseSize parses a byte count: digits, optionally with a decimal part,
// optionally followed (after optional spaces) by one of the units B, KiB,
// MiB, GiB, KB, MB, GB. Units are case-sensitive. The result must be a whole,
// non-negative number of bytes that fits in an int64.
func ParseSize(s string) (Size, error) {
	num := strings.TrimRight(s, "BKMGi")
	unit := s[len(num):]
	num = strings.TrimRight(num, " ")
	mult := int64(1)
	if unit != "" {
		found := false
		for _, u := range sizeUnits {
			if u.name == unit {
				mult, found = u.n, true
				break
			}
		}
		if !found {
			return 0, errors.New("unknown unit (use B, KiB, MiB, GiB, KB, MB or GB)")
		}
	}
	if strings.HasPrefix(num, "-") {
		return 0, errors.New("must not be negative")
	}
	if !isDecimal(num) {
		return 0, errNotSize
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, errNotSize
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, errors.New("not a whole number of bytes")
	}
	if !r.Num().IsInt64() {
		return 0, errSizeTooLarge
	}
	return Size(r.Num().Int64()), nil
}

// isDecimal reports whether s is digits with an optional fractional part of
// digits ("12", "1.5"); a leading or trailing dot is not accepted.
func isDecimal(s string) bool {
	intPart, frac, hasDot := strings.Cut(s, ".")
	return allDigits(intPart) && (!hasDot || allDigits(frac))
}

func allDigits(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ParseStatusRange parses a status set: a code ("503"), a range
// ("500-599"), or a comma-separated list of both ("500, 502-504"). Spaces
// around commas and dashes are ignored. Codes are 100 to 599, a range's low
// end is at most its high end, and the list has at least one element.
func ParseStatusRange(s string) (StatusRange, error) {
	sr := StatusRange{Text: s}
	if strings.TrimSpace(s) == "" {
		return sr, errors.New("empty; write a code, a range such as 500-599, or a comma-separated list of both")
	}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return StatusRange{Text: s}, errors.New("empty element in the list")
		}
		loText, hiText, isRange := strings.Cut(part, "-")
		lo, err := parseStatusCode(strings.TrimSpace(loText))
		if err != nil {
			return StatusRange{Text: s}, err
		}
		hi := lo
		if isRange {
			if hi, err = parseStatusCode(strings.TrimSpace(hiText)); err != nil {
				return StatusRange{Text: s}, err
			}
			if lo > hi {
				return StatusRange{Text: s}, fmt.Errorf("range %d-%d runs backwards", lo, hi)
			}
		}
		sr.Ranges = append(sr.Ranges, [2]int{lo, hi})
	}
	return sr, nil
}

// parseStatusCode parses one status code from 100 to 599.
func parseStatusCode(s string) (int, error) {
	if !allDigits(s) {
		return 0, fmt.Errorf("%q is not a status code", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 || n > 599 {
		return 0, fmt.Errorf("status %s is outside 100-599", s)
	}
	return n, nil
}

// String returns the set as written.
func (s StatusRange) String() string { return s.Text }

// MarshalText returns the set as written, so that JSON shows it as a string.
func (s StatusRange) MarshalText() ([]byte, error) { return []byte(s.Text), nil }

// UnmarshalText parses a set as ParseStatusRange does.
func (s *StatusRange) UnmarshalText(text []byte) error {
	v, err := ParseStatusRange(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// mustStatusRange parses a constant set; it is for the defaults.
func mustStatusRange(s string) StatusRange {
	v, err := ParseStatusRange(s)
	if err != nil {
		panic(err)
	}
	return v
}
