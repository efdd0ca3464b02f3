package tokenform

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type closeCount struct {
	io.Reader
	closed int
}

func (c *closeCount) Close() error { c.closed++; return nil }

func TestIsOnlyAPostedForm(t *testing.T) {
	for _, tt := range []struct {
		method, ct string
		want       bool
	}{
		{"POST", "application/x-www-form-urlencoded", true},
		{"POST", "application/x-www-form-urlencoded; charset=utf-8", true},
		{"GET", "application/x-www-form-urlencoded", false},
		{"POST", "application/json", false},
		{"POST", "", false},
	} {
		req := httptest.NewRequest(tt.method, "https://idp.example/token", strings.NewReader("a=b"))
		req.Header.Set("Content-Type", tt.ct)
		if got := Is(req); got != tt.want {
			t.Errorf("%s %q: %v, want %v", tt.method, tt.ct, got, tt.want)
		}
	}
}

// Read closes the body whatever happens, and refuses a form over MaxForm.
func TestReadBoundsAndCloses(t *testing.T) {
	for _, size := range []int{3, MaxForm, MaxForm + 1} {
		body := &closeCount{Reader: strings.NewReader(strings.Repeat("x", size))}
		req, _ := http.NewRequest("POST", "https://idp.example/token", body)
		got, err := Read(req)
		if body.closed != 1 {
			t.Errorf("%d bytes: closed %d times", size, body.closed)
		}
		if size > MaxForm && err == nil || size <= MaxForm && (err != nil || len(got) != size) {
			t.Errorf("%d bytes: %d read, %v", size, len(got), err)
		}
	}
}

// WithBody gives a copy, resendable, and leaves the request given alone.
func TestWithBodyCopies(t *testing.T) {
	req := httptest.NewRequest("POST", "https://idp.example/token", strings.NewReader("a=b"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	out := WithBody(req, "a=b&c=d")
	out.Header.Set("DPoP", "proof")
	if out == req || req.Header.Get("DPoP") != "" || out.ContentLength != 7 {
		t.Fatalf("the request given was changed, or the copy is wrong: %d", out.ContentLength)
	}
	for range 2 {
		b, _ := out.GetBody()
		if s, _ := io.ReadAll(b); string(s) != "a=b&c=d" {
			t.Fatalf("GetBody gave %q", s)
		}
	}
}
