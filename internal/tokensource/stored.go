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

// Store is the part of a tokenstore.Backend that Stored uses.
type Store interface {
	Update(ctx context.Context, k tokenstore.Key, fn func(cur tokenstore.Record, ok bool) (*tokenstore.Record, error)) (tokenstore.Record, error)
	// Shared reports whether replicas on other hosts use the store (see
	// tokenstore.Backend): then a grant whose refresh tokens rotate is
	// never refreshed without its lock.
	Shared() bool
}

// Stored puts the token store between the cache and a grant. Under the
// store's lock it re-reads the grant and hands out a token another process
// (or replica) already fetched when that one is still good; otherwise it
// asks the grant and writes the answer to the store before handing it out.
// With rotating refresh tokens that order is what keeps a grant alive: a
// refresh token that reached COOP but not the store is a farmer locked out.
//
// When the write fails the new tokens are kept in memory ("pending"), used,
// and written again by Flush; Durable reports false until then. A write a
// shared store fenced off (tokenstore.ErrLockLost: the lock expired during
// the token request) is pending too, and Flush reconciles it with what the
// store holds by then (see ours).
//
// A refresh token the token endpoint refused (invalid_grant) is recorded
// in the grant (Record.RefusedRefresh) and never sent again, by this
// process or any other sharing the store.
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
	// OnOwnFetch, when set, is called for each client-credentials token
	// fetched without the lock of a shared store that cannot be used.
	OnOwnFetch func()

	fetching sync.Mutex // held by Token throughout, and by Flush
	// pendingFrom is the refresh token the store held when tokens first
	// became pending (their base; "" for a first fetch, or client
	// credentials): the store still holding it (or the pending ones)
	// means no one else has refreshed since. Under fetching.
	pendingFrom string

	mu      sync.Mutex                        // guards Grant; never held across I/O
	pending atomic.Pointer[tokenstore.Record] // fetched, not yet in the store; changed under fetching
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

	var got, was, superseded tokenstore.Record
	fetched, dropped, supersededOK := false, false, false
	var refusedErr error // the fetch failed, but the grant changed all the same (see fetch)
	storeCtx, cancel := storeContext(ctx)
	defer cancel()
	_, err := s.Store.Update(storeCtx, grant.Key(), func(cur tokenstore.Record, ok bool) (*tokenstore.Record, error) {
		switch {
		case pending != nil && s.ours(cur, ok, *pending):
			// Our newest tokens never reached the store: they, not the
			// store, hold the live refresh token.
			cur, ok = *pending, true
			if s.usable(cur, rejected) {
				got = cur
				return &cur, nil
			}
		case pending != nil:
			dropped, superseded, supersededOK = true, cur, ok
			if s.usable(cur, rejected) {
				got = cur
				return nil, nil
			}
		case ok && s.usable(cur, rejected):
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
	if dropped && (err == nil || errors.As(err, new(fnError))) {
		s.drop(*pending, superseded, supersededOK)
	}
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
		if s.pending.Load() == nil {
			s.pendingFrom = was.RefreshToken
		}
		s.keepPending(got, err)
	default:
		return s.fromMemory(ctx, grant, pending, rejected, err)
	}
	if refusedErr != nil {
		return tokenstore.Record{}, refusedErr
	}
	return got, nil
}

// fromMemory is Token when the store cannot be locked or read (err): it
// works from what it holds rather than stop serving, and keeps trying to
// write. With a shared store, a grant with a refresh token is never
// refreshed without the lock (another replica may be refreshing it:
// COOP would kill the grant on the second use of one refresh token), and
// client credentials fetch a token of their own, not kept pending (there
// is no rotation to lose).
func (s *Stored) fromMemory(ctx context.Context, grant Grant, pending *tokenstore.Record, rejected string, err error) (tokenstore.Record, error) {
	cur, ok := tokenstore.Record{}, false
	if pending == nil {
		s.pendingFrom = "" // what is fetched now comes from nothing the store held
	} else {
		cur, ok = *pending, true
		if s.usable(cur, rejected) {
			return cur, nil
		}
	}
	if s.Store.Shared() {
		if grant.Key().GrantType != "client_credentials" || cur.RefreshToken != "" {
			return tokenstore.Record{}, &Error{Code: StoreUnavailable, Err: err, Description: fmt.Sprintf(
				"the shared token store cannot be used (%v), and the farmer's grant is never refreshed without its lock; retrying", err)}
		}
		next, ferr := s.fetch(ctx, grant, tokenstore.Record{}, false)
		if ferr != nil {
			return tokenstore.Record{}, ferr
		}
		if s.OnOwnFetch != nil {
			s.OnOwnFetch()
		}
		s.Log.Warn("shared token store unusable: fetched a client-credentials token of our own, not shared with the other replicas",
			zap.String("token", redact.Fingerprint(next.AccessToken)), zap.Error(err))
		return next, nil
	}
	s.Log.Error("token store unusable; working from memory", zap.Error(err))
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

// fetch asks the grant. With an error the record is empty, but for two
// answers that changed the grant, to be written with the error returned
// all the same: a refresh refused (invalid_grant), whose refresh token is
// recorded in the grant as refused so that no process sharing the store
// sends it again; and an answer refused that rotated the refresh token
// (see refusedRotation).
func (s *Stored) fetch(ctx context.Context, grant Grant, cur tokenstore.Record, ok bool) (tokenstore.Record, error) {
	if ok && refusedGrant(cur) {
		return tokenstore.Record{}, &Error{Code: LoginRequired, Description: "the token endpoint refused the stored grant (expired or revoked): run `coop-proxy login` to log in again"}
	}
	key := s.DPoP.For(cur, ok)
	next, err := grant.Fetch(dpop.WithKey(ctx, key), cur, ok)
	rot, rotated := errors.AsType[*refusedRotation](err)
	if err != nil && !rotated {
		var te *Error
		if errors.As(err, &te) && te.Code == LoginRequired && ok && cur.RefreshToken != "" {
			cur.RefusedRefresh = tokenstore.RefusedHash(cur.RefreshToken)
			return cur, err
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

// refusedGrant reports whether r's refresh token is one the token endpoint
// refused.
func refusedGrant(r tokenstore.Record) bool {
	return r.RefreshToken != "" && r.RefusedRefresh == tokenstore.RefusedHash(r.RefreshToken)
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
	switch {
	case errors.Is(err, tokenstore.ErrLockLost):
		s.Log.Warn("the grant's lock expired during the token request: the new tokens were not written over the grant, "+
			"which another replica may have changed meanwhile; kept in memory and reconciled with the store",
			zap.String("token", redact.Fingerprint(rec.AccessToken)), zap.Error(err))
	case refusedGrant(rec):
		s.Log.Error("the refusal of the refresh token could not be recorded in the token store; retried",
			zap.Error(err))
	default:
		s.Log.Error("NEW TOKENS NOT WRITTEN TO THE TOKEN STORE: kept in memory and retried; a restart now would lose the grant",
			zap.String("token", redact.Fingerprint(rec.AccessToken)), zap.Error(err))
	}
}

// ours reports whether the pending tokens may be written over what the
// store holds (cur, ok): the refresh token they were refreshed from or
// their own (nobody refreshed since), or a refresh token refused; or
// nothing, when they came from nothing the store held (a first fetch,
// client credentials). Anything else is another replica's newer grant
// (its refresh of a token it read before ours was fenced off) or a new
// login, which wins; or, when they were refreshed from a stored grant
// that is gone, a logout, which writing them would undo: the pending
// tokens, whose refresh token COOP may have killed by then, are dropped.
// (A shared store that lost a grant writes it back before it answers, so
// an absent grant is a logout there too.)
func (s *Stored) ours(cur tokenstore.Record, ok bool, pending tokenstore.Record) bool {
	if !ok {
		return s.pendingFrom == ""
	}
	return cur.RefreshToken == s.pendingFrom || cur.RefreshToken == pending.RefreshToken || refusedGrant(cur)
}

// drop forgets the pending tokens for what the store holds (won, or
// nothing when !present: a logout), and says which won.
func (s *Stored) drop(pending, won tokenstore.Record, present bool) {
	s.pending.Store(nil)
	if !present {
		s.Log.Warn("tokens kept in memory dropped: the grant they were refreshed from was deleted from the token store (a logout), which wins",
			zap.String("dropped", redact.Fingerprint(pending.AccessToken)))
		return
	}
	winner := "a new login"
	if won.UserID == pending.UserID && won.GrantedAt.Equal(pending.GrantedAt) {
		winner = "another process's refresh of the same grant"
	}
	s.Log.Warn("tokens kept in memory dropped: the token store holds a newer grant, which wins",
		zap.String("winner", winner), zap.String("dropped", redact.Fingerprint(pending.AccessToken)),
		zap.String("kept", redact.Fingerprint(won.AccessToken)))
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

// Durable reports whether every token handed out is in the store. It
// never waits.
func (s *Stored) Durable() bool { return s.pending.Load() == nil }

// Flush writes pending tokens, if any, unless the store holds a newer
// grant by now, or the grant they were refreshed from was deleted (a
// logout; see ours), which wins. It returns nil when nothing is
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
	var won *tokenstore.Record
	present := false
	if _, err := s.Store.Update(ctx, s.grant().Key(), func(cur tokenstore.Record, ok bool) (*tokenstore.Record, error) {
		if !s.ours(cur, ok, rec) {
			won, present = &cur, ok
			return nil, nil
		}
		return &rec, nil
	}); err != nil {
		return err
	}
	if won != nil {
		s.drop(rec, *won, present)
		return nil
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
