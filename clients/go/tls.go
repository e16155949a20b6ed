package plutos

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
)

// TLSConfig returns a TLS configuration trusting the PEM CA bundle caFile instead of the system's
// roots ("" keeps the system's), presenting the PEM client certificate certFile with its key keyFile
// when both are given (mTLS; both or neither). The REST client takes it through WithCAFile /
// WithClientCert (or WithTLSConfig), the gRPC client through grpcclient.TLSCredentials.
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("plutos: reading the CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("plutos: no PEM certificate in %s", caFile)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("plutos: a client certificate needs both its certificate and its key file")
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("plutos: loading the client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// WithCAFile trusts the PEM CA bundle at path for HTTPS instead of the system's roots (a private CA,
// a server started with a self-made certificate). A file that cannot be read is reported by every call.
func WithCAFile(path string) Option {
	return func(c *Client) { c.caFile = path }
}

// WithClientCert presents the PEM client certificate certFile with its key keyFile (mutual TLS).
// Files that cannot be read are reported by every call.
func WithClientCert(certFile, keyFile string) Option {
	return func(c *Client) { c.certFile, c.keyFile = certFile, keyFile }
}

// WithTLSConfig sets the TLS configuration of HTTPS requests (see TLSConfig).
func WithTLSConfig(cfg *tls.Config) Option {
	return func(c *Client) { c.tlsConfig = cfg }
}

// applyTLS gives the client's HTTP client a transport with the TLS options (a copy: the
// *http.Client passed to WithHTTPClient is not changed).
func (c *Client) applyTLS() {
	cfg := c.tlsConfig
	if c.caFile != "" || c.certFile != "" || c.keyFile != "" {
		loaded, err := TLSConfig(c.caFile, c.certFile, c.keyFile)
		if err != nil {
			if c.configErr == nil {
				c.configErr = err
			}
			return
		}
		cfg = loaded
	}
	if cfg == nil {
		return
	}
	base, ok := c.httpClient.Transport.(*http.Transport)
	if c.httpClient.Transport == nil {
		base, ok = http.DefaultTransport.(*http.Transport)
	}
	if !ok {
		if c.configErr == nil {
			c.configErr = errors.New("plutos: TLS options need the HTTP client's Transport to be an *http.Transport")
		}
		return
	}
	transport := base.Clone()
	transport.TLSClientConfig = cfg
	hc := *c.httpClient
	hc.Transport = transport
	c.httpClient = &hc
}
