package config

import (
	"os"
	"path/filepath"
	"syscall"
)

// wOK is access(2)'s mode for "may write".
const wOK = 2

// accessLog checks that the access log can be written at dest ("off",
// "stdout" and "stderr" always can). It looks without touching anything:
// the file, when it exists, must be a file sluice may write; otherwise its
// directory must exist and be writable, for the file to be made there.
func (v *validator) accessLog(dest string) {
	switch dest {
	case "off", "stdout", "stderr":
		return
	}
	val := v.value("access_log", dest)
	if fi, err := os.Stat(dest); err == nil {
		switch {
		case fi.IsDir():
			v.add("access_log", val, reason("is a directory, not a file to write the access log to"))
		case syscall.Access(dest, wOK) != nil:
			v.add("access_log", val, reason("the file cannot be written"))
		}
		return
	}
	dir := filepath.Dir(dest)
	fi, err := os.Stat(dir)
	switch {
	case err != nil:
		v.add("access_log", val, reason("its directory %s does not exist", quote(dir)))
	case !fi.IsDir():
		v.add("access_log", val, reason("%s is not a directory", quote(dir)))
	case syscall.Access(dir, wOK) != nil:
		v.add("access_log", val, reason("its directory %s cannot be written to", quote(dir)))
	}
}
