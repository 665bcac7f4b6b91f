package admin

import (
	"net/http"
	"testing"
)

// TestTokenEveryPath: with a token, every path but /healthz, /readyz and
// the dashboard's page needs it, a path that does not exist too (401, not
// 404); the scheme "Bearer" is matched in any case.
func TestTokenEveryPath(t *testing.T) {
	srv := serve(t, Options{Token: func() string { return "tok" }, Stats: func() any { return map[string]any{} }})
	for _, tt := range []struct {
		path, auth string
		want       int
	}{
		{"/healthz", "", 200},
		{"/readyz", "", 200},
		{"/", "", 200},
		{"/stats", "", 401},
		{"/nonexistent", "", 401},
		{"/nonexistent", "Bearer tok", 404},
		{"/stats", "Bearer tok", 200},
		{"/stats", "bearer tok", 200},
		{"/stats", "BEARER tok", 200},
		{"/stats", "Bearer wrong", 401},
		{"/stats", "Basic tok", 401},
		{"/stats", "Bearertok", 401},
	} {
		req, _ := http.NewRequest("GET", srv.URL+tt.path, nil)
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("GET %s with %q = %d, want %d", tt.path, tt.auth, resp.StatusCode, tt.want)
		}
	}
}
