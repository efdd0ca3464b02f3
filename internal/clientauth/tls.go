package clientauth

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"time"
)

// LoadCertificate reads a TLS client certificate (its chain, leaf first)
// and its private key from PEM, for mutual-TLS client authentication
// (RFC 8705 §2): the key in any form ParseKey reads, and of any kind TLS
// takes. A key that is not the certificate's, and a certificate outside
// its validity at now, are refused: the token endpoint would refuse them,
// with a less clear message. Errors never hold the key's bytes.
func LoadCertificate(certPEM, keyPEM []byte, now time.Time) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// crypto/tls names what is wrong ("private key does not match
		// public key", "failed to find any PEM data in certificate
		// input"), never the key.
		return nil, err
	}
	leaf := cert.Leaf // parsed by X509KeyPair since Go 1.23, unless GODEBUG=x509keypairleaf=0
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	switch {
	case now.After(leaf.NotAfter):
		return nil, fmt.Errorf("the certificate expired on %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return nil, fmt.Errorf("the certificate is valid only from %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return &cert, nil
}

// PresentCertificate makes tr present cert to every server that asks for a
// client certificate. It is given through GetClientCertificate, not
// tls.Config.Certificates: with Certificates, Go sends no certificate when
// the server's list of acceptable CAs does not name its issuer, and a
// self-signed certificate (RFC 8705 §2.2) is in no such list.
func PresentCertificate(tr *http.Transport, cert *tls.Certificate) {
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{}
	}
	tr.TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return cert, nil
	}
}
