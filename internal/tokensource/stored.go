package tokensource

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/dpop"
	"github.com/coop-proxy/coop-proxy/internal/redact"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// Store is the part of *tokenstore.Store that Stored uses.
type Store interface {
	Update(ctx context.Context, k tokenstore.Key, fn func(cur tokenstore.Record, ok bool) (*tokenstore.Record, error)) (tokenstore.Record, error)
}

// Stored puts the token store between the cache and a grant. Under the
// store's cross-process lock it re-reads the file and hands out a token
// another process already fetched when that one is still good; otherwise it
// asks the grant and writes the answer to the file before handing it out.
// With rotating refresh tokens that order is what keeps a grant alive: a
// refresh token that reached COOP but not the disk is a farmer locked out.
//
// When the write fails the new tokens are kept in memory ("pending"), used,
// and written again by Flush; Durable reports false until then.
//
// Token holds a lock across the request to the token endpoint (one fetch at
// a time); Durable, Flush and SetGrant never wait for it.
type Stored struct {
	Grant  Grant // replaced with SetGrant once in use
	Store  Store
	Margin time.Duration // renew this long before expiry (see renewAt)
	Now    func() time.Time
	Log    *zap.Logger
	// DPoP binds the tokens to a key (RFC 9449); nil: bearer tokens. A
	// stored record whose tokens do not fit it is fetched again.
	DPoP *dpop.Keys

	fetching sync.Mutex // held by Token throughout, and by Flush
	dead     string     // a refresh token COOP refused: never sent again; under fetching

	mu      sync.Mutex                        // guards Grant; never held across I/O
	pending atomic.Pointer[tokenstore.Record] // fetched, not yet on disk; changed under fetching
}

// fnError marks errors that came from inside the Update callback (the grant),
// as opposed to errors of the store itself.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// Token returns a record whose access token is valid for at least Margin
// and is not rejected (the access token the resource server just refused).
func (s *Stored) Token(ctx context.Context, rejected string) (tokenstore.Record, error) {
	s.fetching.Lock()
	defer s.fetching.Unlock()
	grant := s.grant()
	pending := s.pending.Load()

	var got, was tokenstore.Record
	fetched := false
	var refusedErr error // the fetch failed, but rotated the refresh token kept in got (see refusedRotation)
	storeCtx, cancel := storeContext(ctx)
	defer cancel()
	_, err := s.Store.Update(storeCtx, grant.Key(), func(cur tokenstore.Record, ok bool) (*tokenstore.Record, error) {
		if pending != nil {
			// Our newest tokens never reached the disk: they, not the file,
			// hold the live refresh token.
			cur, ok = *pending, true
			if s.usable(cur, rejected) {
				got = cur
				return &cur, nil
			}
		} else if ok && s.usable(cur, rejected) {
			got = cur // another process (or our last run) already has one
			return nil, nil
		}
		next, err := s.fetch(ctx, grant, cur, ok)
		if err != nil && next.RefreshToken == "" {
			return nil, fnError{err}
		}
		got, was, fetched, refusedErr = next, cur, err == nil, err
		return &next, nil
	})
	// Logged once written: nothing stands between a rotated refresh
	// token's arrival and its write that need not.
	if fetched {
		s.logObtained(grant, got, was)
	}
	var fe fnError
	var we *tokenstore.WriteError
	switch {
	case err == nil:
		s.pending.Store(nil)
	case errors.As(err, &fe):
		return tokenstore.Record{}, fe.err
	case errors.As(err, &we):
		s.keepPending(got, err)
	default:
		// The store cannot be locked or read: work from memory rather than
		// stop serving, and keep trying to write.
		s.Log.Error("token store unusable; working from memory", zap.Error(err))
		cur, ok := tokenstore.Record{}, false
		if pending != nil {
			cur, ok = *pending, true
			if s.usable(cur, rejected) {
				return cur, nil
			}
		}
		next, ferr := s.fetch(ctx, grant, cur, ok)
		if ferr != nil && next.RefreshToken != "" {
			s.keepPending(next, err)
		}
		var te *Error
		if !ok && errors.As(ferr, &te) && te.Code == LoginRequired {
			// The grant needs the stored record, which could not be read:
			// a farmer may well have logged in.
			return tokenstore.Record{}, &Error{Code: Unavailable, Err: err, Description: fmt.Sprintf(
				"the token store cannot be locked or read, so the farmer's grant in it cannot be used (%v); retrying", err)}
		}
		if ferr != nil {
			return tokenstore.Record{}, ferr
		}
		s.keepPending(next, err)
		s.logObtained(grant, next, cur)
		return next, nil
	}
	if refusedErr != nil {
		return tokenstore.Record{}, refusedErr
	}
	return got, nil
}

// storeContext bounds the wait for the store (its cross-process lock) to
// half of what ctx leaves: when another process holds the lock for longer,
// the other half is the fetch's, made from memory (see Token). Waiting for
// the whole of ctx would leave the fetch an ended context, and the token
// endpoint would be blamed for not answering in time.
func storeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, time.Until(deadline)/2)
}

// fetch asks the grant, remembering a refresh token COOP refused so that a
// dead grant costs no further requests until a new login replaces it. With
// an error the record is empty, but for an answer refused that rotated the
// refresh token: it holds that token, to be written (see refusedRotation).
func (s *Stored) fetch(ctx context.Context, grant Grant, cur tokenstore.Record, ok bool) (tokenstore.Record, error) {
	if ok && cur.RefreshToken != "" && cur.RefreshToken == s.dead {
		return tokenstore.Record{}, &Error{Code: LoginRequired, Description: "the token endpoint refused the stored grant (expired or revoked): run `coop-proxy login` to log in again"}
	}
	key := s.DPoP.For(cur, ok)
	next, err := grant.Fetch(dpop.WithKey(ctx, key), cur, ok)
	rot, rotated := errors.AsType[*refusedRotation](err)
	if err != nil && !rotated {
		var te *Error
		if errors.As(err, &te) && te.Code == LoginRequired && cur.RefreshToken != "" {
			s.dead = cur.RefreshToken
		}
		return tokenstore.Record{}, err
	}
	if rotated {
		next = rot.keep
	}
	// Who the grant is for and since when outlive every token of it.
	if ok {
		next.UserID, next.Email, next.GrantedAt = cur.UserID, cur.Email, cur.GrantedAt
	}
	s.DPoP.Bind(&next, key)
	next.UpdatedAt = now(s.Now) // the store sets it again when it writes; renewAt counts the lifetime from it
	if next.GrantedAt.IsZero() {
		next.GrantedAt = next.UpdatedAt
	}
	return next, err
}

// logObtained logs a token fetched to replace cur.
func (s *Stored) logObtained(grant Grant, next, cur tokenstore.Record) {
	s.Log.Info("token obtained",
		zap.String("grant", grant.Key().GrantType),
		zap.String("token", redact.Fingerprint(next.AccessToken)),
		zap.Time("expiry", next.Expiry),
		zap.Bool("refresh_token_rotated", next.RefreshToken != "" && next.RefreshToken != cur.RefreshToken))
}

func (s *Stored) keepPending(rec tokenstore.Record, err error) {
	s.pending.Store(&rec)
	s.Log.Error("NEW TOKENS NOT WRITTEN TO THE TOKEN STORE: kept in memory and retried; a restart now would lose the grant",
		zap.String("token", redact.Fingerprint(rec.AccessToken)), zap.Error(err))
}

// SetGrant replaces the grant, as a reload does when the client secret
// changed. The store key must stay the same.
func (s *Stored) SetGrant(g Grant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Grant = g
}

func (s *Stored) grant() Grant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Grant
}

// Durable reports whether every token handed out is on disk. It never
// waits.
func (s *Stored) Durable() bool { return s.pending.Load() == nil }

// Flush writes pending tokens, if any. It returns nil when nothing is
// pending, and at once when a fetch is in flight: that fetch writes the
// pending tokens itself (or newer ones), and they stay pending if it cannot.
func (s *Stored) Flush(ctx context.Context) error {
	if !s.fetching.TryLock() {
		return nil
	}
	defer s.fetching.Unlock()
	pending := s.pending.Load()
	if pending == nil {
		return nil
	}
	rec := *pending
	if _, err := s.Store.Update(ctx, s.grant().Key(), func(tokenstore.Record, bool) (*tokenstore.Record, error) {
		return &rec, nil
	}); err != nil {
		return err
	}
	s.pending.Store(nil)
	s.Log.Warn("pending tokens written to the token store", zap.String("token", redact.Fingerprint(rec.AccessToken)))
	return nil
}

// usable: not the rejected token, bound to the DPoP key in effect (or to
// none, with DPoP off), and not yet due for renewal. A record with no
// expiry is taken as valid until the resource server says otherwise.
func (s *Stored) usable(r tokenstore.Record, rejected string) bool {
	if r.AccessToken == "" || r.AccessToken == rejected {
		return false
	}
	if _, err := s.DPoP.Of(r); err != nil {
		return false
	}
	t := now(s.Now)
	return t.Before(renewAt(r, t, s.Margin))
}
