package tokensource

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

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
type Stored struct {
	Grant  Grant
	Store  Store
	Margin time.Duration // renew this long before expiry (see renewAt)
	Now    func() time.Time
	Log    *zap.Logger

	mu      sync.Mutex
	pending *tokenstore.Record // fetched, not yet on disk
	dead    string             // a refresh token COOP refused: never sent again
}

// fnError marks errors that came from inside the Update callback (the grant),
// as opposed to errors of the store itself.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// Token returns a record whose access token is valid for at least Margin
// and is not rejected (the access token the resource server just refused).
func (s *Stored) Token(ctx context.Context, rejected string) (tokenstore.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := s.Grant.Key()

	var got tokenstore.Record
	_, err := s.Store.Update(ctx, key, func(cur tokenstore.Record, ok bool) (*tokenstore.Record, error) {
		if s.pending != nil {
			// Our newest tokens never reached the disk: they, not the file,
			// hold the live refresh token.
			cur, ok = *s.pending, true
			if s.usable(cur, rejected) {
				got = cur
				return &cur, nil
			}
		} else if ok && s.usable(cur, rejected) {
			got = cur // another process (or our last run) already has one
			return nil, nil
		}
		next, err := s.fetch(ctx, cur, ok)
		if err != nil {
			return nil, fnError{err}
		}
		got = next
		return &next, nil
	})
	var fe fnError
	var we *tokenstore.WriteError
	switch {
	case err == nil:
		s.pending = nil
		return got, nil
	case errors.As(err, &fe):
		return tokenstore.Record{}, fe.err
	case errors.As(err, &we):
		s.keepPending(got, err)
		return got, nil
	default:
		// The store cannot be locked or read: work from memory rather than
		// stop serving, and keep trying to write.
		s.Log.Error("token store unusable; working from memory", zap.Error(err))
		cur, ok := tokenstore.Record{}, false
		if s.pending != nil {
			cur, ok = *s.pending, true
			if s.usable(cur, rejected) {
				return cur, nil
			}
		}
		next, ferr := s.fetch(ctx, cur, ok)
		if ferr != nil {
			return tokenstore.Record{}, ferr
		}
		s.keepPending(next, err)
		return next, nil
	}
}

// fetch asks the grant, remembering a refresh token COOP refused so that a
// dead grant costs no further requests until a new login replaces it.
func (s *Stored) fetch(ctx context.Context, cur tokenstore.Record, ok bool) (tokenstore.Record, error) {
	if ok && cur.RefreshToken != "" && cur.RefreshToken == s.dead {
		return tokenstore.Record{}, &Error{Code: LoginRequired, Description: "COOP refused the stored grant (expired or revoked): run `coop-proxy login` to log in again"}
	}
	next, err := s.Grant.Fetch(ctx, cur, ok)
	if err != nil {
		var te *Error
		if errors.As(err, &te) && te.Code == LoginRequired && cur.RefreshToken != "" {
			s.dead = cur.RefreshToken
		}
		return tokenstore.Record{}, err
	}
	// Who the grant is for and since when outlive every token of it.
	if ok {
		next.UserID, next.Email, next.GrantedAt = cur.UserID, cur.Email, cur.GrantedAt
	}
	next.UpdatedAt = now(s.Now) // the store sets it again when it writes; renewAt counts the lifetime from it
	if next.GrantedAt.IsZero() {
		next.GrantedAt = next.UpdatedAt
	}
	s.Log.Info("token obtained",
		zap.String("grant", s.Grant.Key().GrantType),
		zap.String("token", redact.Fingerprint(next.AccessToken)),
		zap.Time("expiry", next.Expiry),
		zap.Bool("refresh_token_rotated", next.RefreshToken != "" && next.RefreshToken != cur.RefreshToken))
	return next, nil
}

func (s *Stored) keepPending(rec tokenstore.Record, err error) {
	s.pending = &rec
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

// Durable reports whether every token handed out is on disk.
func (s *Stored) Durable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending == nil
}

// Flush writes pending tokens, if any. It returns nil when nothing is pending.
func (s *Stored) Flush(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		return nil
	}
	rec := *s.pending
	if _, err := s.Store.Update(ctx, s.Grant.Key(), func(tokenstore.Record, bool) (*tokenstore.Record, error) {
		return &rec, nil
	}); err != nil {
		return err
	}
	s.pending = nil
	s.Log.Warn("pending tokens written to the token store", zap.String("token", redact.Fingerprint(rec.AccessToken)))
	return nil
}

// usable: not the rejected token, and not yet due for renewal. A record
// with no expiry is taken as valid until the resource server says otherwise.
func (s *Stored) usable(r tokenstore.Record, rejected string) bool {
	if r.AccessToken == "" || r.AccessToken == rejected {
		return false
	}
	t := now(s.Now)
	return t.Before(renewAt(r, t, s.Margin))
}
