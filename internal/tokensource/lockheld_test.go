//go:build unix

package tokensource

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// holdStoreLock takes the store's lock as another process would (a `token`
// command stopped mid-refresh, a wedged sidecar) until the test ends.
func holdStoreLock(t *testing.T, st *tokenstore.Store) {
	t.Helper()
	f, err := os.OpenFile(st.Path()+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
}

// The lock held by another process for longer than a fetch may take must
// not use up the fetch: the client-credentials grant is then fetched and
// kept in memory (as with any unusable store), and a grant that needs the
// store is reported as the store's trouble, naming its lock, never as a
// token endpoint that "did not answer in time".
func TestStoredLockHeldElsewhereLeavesTimeToFetch(t *testing.T) {
	st, err := tokenstore.Open(filepath.Join(t.TempDir(), "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	holdStoreLock(t, st)

	endpoint := tokenServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"access-1","token_type":"Bearer","expires_in":3600}`)
	})
	s := &Stored{Grant: ccGrant(endpoint.URL, nil, oauth2.AuthStyleInParams), Store: st, Margin: 5 * time.Minute, Log: zap.NewNop()}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rec, err := s.Token(ctx, "")
	if err != nil || rec.AccessToken != "access-1" || s.Durable() {
		t.Fatalf("client credentials, lock held elsewhere: %v, %v, durable %v; want a token kept in memory", rec, err, s.Durable())
	}

	r := &Stored{Store: st, Margin: 5 * time.Minute, Log: zap.NewNop(), Grant: &Refresh{Config: &oauth2.Config{
		ClientID: "Brent's Lazy CRON Job", Endpoint: oauth2.Endpoint{TokenURL: "http://coop.test/token"}}}}
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = r.Token(ctx, "")
	var te *Error
	if !errors.As(err, &te) || te.Code != Unavailable || !strings.Contains(te.Description, st.Path()+".lock") || strings.Contains(te.Description, "in time") {
		t.Fatalf("farmer's grant, lock held elsewhere: %v; want %s naming the lock file", err, Unavailable)
	}
}
