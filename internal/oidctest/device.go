package oidctest

// The device authorization grant's storage (RFC 8628).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
)

// RFC 8628 §3.2: zitadel makes the codes; the storage keeps them.
func (s *storage) StoreDeviceAuthorization(_ context.Context, clientID, deviceCode, userCode string, expires time.Time, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.userCodes[userCode]; ok {
		return op.ErrDuplicateUserCode
	}
	s.devices[deviceCode] = &op.DeviceAuthorizationState{ClientID: clientID, Scopes: scopes, Expires: expires, Audience: []string{s.audience}}
	s.userCodes[userCode] = deviceCode
	return nil
}

// GetDeviceAuthorizatonState (zitadel's spelling) hands zitadel a copy,
// which it turns into authorization_pending, access_denied,
// expired_token or tokens (RFC 8628 §3.5).
func (s *storage) GetDeviceAuthorizatonState(_ context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.devices[deviceCode]
	if !ok || st.ClientID != clientID {
		return nil, errors.New("device code not found for the client")
	}
	c := *st
	if c.Done || c.Denied {
		// RFC 8628 §3.5: a device code gives tokens once.
		delete(s.devices, deviceCode)
		delete(s.lastPoll, deviceCode)
		return &c, nil
	}
	// RFC 8628 §3.5: a client polling faster than the interval is told to
	// slow_down, which zitadel answers for a deadline exceeded (it does
	// not watch the interval itself). Half the interval leaves room for
	// a client's timer and the network.
	now := time.Now()
	last, polled := s.lastPoll[deviceCode]
	s.lastPoll[deviceCode] = now
	if polled && now.Sub(last) < s.interval/2 {
		return nil, fmt.Errorf("polled too soon: %w", context.DeadlineExceeded)
	}
	return &c, nil
}

// decideDevice approves (as the current user) or denies a user code.
func (s *storage) decideDevice(userCode string, approve bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.devices[s.userCodes[userCode]]
	if !ok {
		return errors.New("user code not found")
	}
	if approve && !s.deny {
		st.Done, st.Subject, st.AuthTime, st.AMR = true, s.user, time.Now(), []string{"pwd"}
	} else {
		st.Denied = true
	}
	return nil
}
