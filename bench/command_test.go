package main

import "testing"

func TestUserCommand(t *testing.T) {
	tests := []struct {
		name string
		argv []string
		want string
	}{
		{
			name: "go run, binary in the build cache",
			argv: []string{"/root/.cache/go-build/8a/8a6adbaac53e-d/bench", "-reps", "3", "-duration", "10s", "-out", "/tmp/benchH4"},
			want: "go run ./bench -reps 3 -duration 10s",
		},
		{
			name: "go run before Go 1.24, binary in a temporary folder",
			argv: []string{"/tmp/go-build1234/b001/exe/bench", "-out=/tmp/x", "-scenarios", "healthy_get,retry_get"},
			want: "go run ./bench -scenarios healthy_get,retry_get",
		},
		{
			name: "no flags",
			argv: []string{"/root/.cache/go-build/aa/bb-d/bench"},
			want: "go run ./bench",
		},
		{
			name: "a built binary keeps its name; --out is dropped too",
			argv: []string{"./benchbin", "--out", "results/x", "-proxies=sluice,nginx"},
			want: "./benchbin -proxies=sluice,nginx",
		},
		{
			name: "an argument that needs quoting",
			argv: []string{"/tmp/go-build9/b001/exe/bench", "-sluice", "/opt/my sluice/bin"},
			want: "go run ./bench -sluice '/opt/my sluice/bin'",
		},
		{
			name: "a flag that only starts like out",
			argv: []string{"/tmp/go-build9/b001/exe/bench", "-outliers", "x"},
			want: "go run ./bench -outliers x",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := userCommand(tt.argv); got != tt.want {
				t.Errorf("userCommand(%q) = %q, want %q", tt.argv, got, tt.want)
			}
		})
	}
}
