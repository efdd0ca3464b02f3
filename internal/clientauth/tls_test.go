package clientauth_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/clientauth"
	"github.com/coop-proxy/coop-proxy/internal/clientauth/clientauthtest"
)

// The certificate is presented to a server that requires one, even when
// the server names acceptable CAs and the certificate (self-signed, RFC
// 8705 §2.2) is issued by none of them: Go's own choice among
// tls.Config.Certificates would send nothing then.
func TestTheCertificateIsPresentedEvenToAServerNamingOtherCAs(t *testing.T) {
	now := time.Now()
	certPEM, keyPEM := clientauthtest.SelfSigned(t, "farm-app", now.Add(-time.Hour), now.Add(time.Hour))
	cert, err := clientauth.LoadCertificate(certPEM, keyPEM, now)
	if err != nil {
		t.Fatal(err)
	}
	otherCA, _ := clientauthtest.SelfSigned(t, "some CA", now.Add(-time.Hour), now.Add(time.Hour))
	cas := x509.NewCertPool()
	cas.AppendCertsFromPEM(otherCA)

	var presented [][]byte
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, c := range r.TLS.PeerCertificates {
			presented = append(presented, c.Raw)
		}
	}))
	// The provider checks the certificate itself (RFC 8705 §2.2), not a chain.
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert, ClientCAs: cas}
	srv.StartTLS()
	defer srv.Close()

	tr := srv.Client().Transport.(*http.Transport).Clone() // trusts the test server
	clientauth.PresentCertificate(tr, cert)
	resp, err := (&http.Client{Transport: tr}).Post(srv.URL+"/token", "application/x-www-form-urlencoded", strings.NewReader("grant_type=client_credentials"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(presented) != 1 || !bytes.Equal(presented[0], cert.Leaf.Raw) {
		t.Fatalf("the server saw %d certificates, not the client's", len(presented))
	}
}

func TestLoadCertificateRefusesACertificateNotYetValid(t *testing.T) {
	now := time.Now()
	certPEM, keyPEM := clientauthtest.SelfSigned(t, "farm-app", now.Add(time.Hour), now.Add(2*time.Hour))
	if _, err := clientauth.LoadCertificate(certPEM, keyPEM, now); err == nil || !strings.Contains(err.Error(), "the certificate is valid only from") {
		t.Fatalf("%v", err)
	}
}

// GODEBUG=x509keypairleaf=0, a setting Go documents, leaves Leaf unset:
// the validity check must not read through nil (a panic at start).
func TestLoadCertificateWithoutTheLeafParsedByX509KeyPair(t *testing.T) {
	t.Setenv("GODEBUG", "x509keypairleaf=0")
	now := time.Now()
	certPEM, keyPEM := clientauthtest.SelfSigned(t, "farm-app", now.Add(-2*time.Hour), now.Add(-time.Hour))
	if _, err := clientauth.LoadCertificate(certPEM, keyPEM, now); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("%v; want the certificate expired", err)
	}
}
