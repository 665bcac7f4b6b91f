package main

import "runtime/debug"

// version is what -version prints and the start-up log records, unless a
// better answer is found (see currentVersion). A release build may set it
// with -ldflags "-X main.version=v1.2.3"; that value always wins.
var version = "dev"

// currentVersion returns sluice's version: version when -ldflags -X set
// it; otherwise the module version that the go command recorded when it
// built sluice from a module download (go install
// github.com/sluice-proxy/sluice/cmd/sluice@v1.2.3); otherwise "dev".
func currentVersion() string {
	info, _ := debug.ReadBuildInfo() // nil when there is none
	return resolveVersion(version, info)
}

// resolveVersion picks the version to report from set (the version
// variable, "dev" unless -ldflags -X changed it) and the binary's build
// information (nil when there is none).
//
// A build from a checkout is a local build and reports "dev", whatever its
// module version says: the go command records "(devel)" for it, or, since
// Go 1.24, a pseudo-version made from the checkout's commit (such as
// v0.0.0-20261129024000-6f640d2a1b2c+dirty), which would look like a
// release without being one. Such a build is recognised by the vcs.*
// settings the go command stamps into it; a build from a module download
// has none, since a module zip holds no repository.
func resolveVersion(set string, info *debug.BuildInfo) string {
	if set != "dev" || info == nil {
		return set
	}
	v := info.Main.Version
	if v == "" || v == "(devel)" {
		return set
	}
	for _, s := range info.Settings {
		if s.Key == "vcs" {
			return set
		}
	}
	return v
}
