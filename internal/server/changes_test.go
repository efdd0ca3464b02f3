package server

import (
	"testing"
	"time"
)

// heldToken is the access token the server's only stack holds, "" for none.
func heldToken(srv *Server) string {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for _, st := range srv.stacks {
		if t := st.tokens.Cache.Current(); t != nil {
			return t.Access()
		}
	}
	return ""
}

// Two processes on one token file: a token one of them fetches (its old
// one was revoked) is adopted by the other within about a second, without a
// request to the token endpoint, rather than when COOP rejects the old one.
func TestATokenFetchedByAnotherProcessIsAdopted(t *testing.T) {
	f := newFarm(t)
	s := f.settings(t)
	a := start(t, s, Options{})
	b := start(t, s, Options{})
	if code, body := post(t, a.proxy+"/api/1/eggs-count"); code != 200 {
		t.Fatalf("through a: %d %s", code, body)
	}
	if code, body := post(t, b.proxy+"/api/1/eggs-count"); code != 200 {
		t.Fatalf("through b: %d %s", code, body)
	}
	first := heldToken(a.srv)
	if first == "" || heldToken(b.srv) != first || f.em.CountTokenRequests("") != 1 {
		t.Fatalf("a holds %q, b %q after %d token requests; want one token for both", first, heldToken(b.srv), f.em.CountTokenRequests(""))
	}
	f.em.RevokeToken(first)
	if code, body := post(t, a.proxy+"/api/1/eggs-count"); code != 200 {
		t.Fatalf("through a after the revocation: %d %s", code, body)
	}
	second := heldToken(a.srv)
	deadline := time.Now().Add(20 * time.Second) // generous: a loaded machine
	for heldToken(b.srv) != second {
		if time.Now().After(deadline) {
			t.Fatalf("b still holds the revoked token %v after 20 s", heldToken(b.srv) == first)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := f.em.CountTokenRequests(""); n != 2 {
		t.Fatalf("%d token requests, want 2: b fetched instead of adopting a's token", n)
	}
}
