package plutos_test

// Against a server in TLS mode (tests/test_tls.py runs these with certificates it made); skipped
// unless PLUTOS_TEST_TLS_BASE_URL (https://...) and PLUTOS_TEST_TLS_CA_FILE are set.

import (
	"errors"
	"os"
	"testing"
	"time"

	plutos "github.com/plutos-ai/go-sdk"
)

func TestTLSLiveRESTTrustsTheCAFile(t *testing.T) {
	baseURL, caFile := os.Getenv("PLUTOS_TEST_TLS_BASE_URL"), os.Getenv("PLUTOS_TEST_TLS_CA_FILE")
	if baseURL == "" || caFile == "" {
		t.Skip("set PLUTOS_TEST_TLS_BASE_URL and PLUTOS_TEST_TLS_CA_FILE to run the TLS tests")
	}
	// With the CA (and a client certificate, which the REST port accepts): TLS passes, the key does not.
	opts := []plutos.Option{plutos.WithBaseURL(baseURL), plutos.WithMaxRetries(0), plutos.WithTimeout(30 * time.Second)}
	c := plutos.NewClient("pk_wrong", "", append(opts, plutos.WithCAFile(caFile),
		plutos.WithClientCert(os.Getenv("PLUTOS_TEST_TLS_CLIENT_CERT"), os.Getenv("PLUTOS_TEST_TLS_CLIENT_KEY")))...)
	_, err := c.ListModels()
	var apiErr *plutos.APIError
	if !errors.As(err, &apiErr) || !plutos.IsAuthentication(err) {
		t.Fatalf("want invalid_api_key over TLS, got %v", err)
	}
	// Without it, the system's roots do not know this CA: a connection error, no HTTP answer.
	_, err = plutos.NewClient("pk_wrong", "", opts...).ListModels()
	if err == nil || errors.As(err, &apiErr) {
		t.Fatalf("want a certificate error, got %v", err)
	}
	// A missing CA file is reported by the call.
	if _, err := plutos.NewClient("pk_wrong", "", append(opts, plutos.WithCAFile(caFile+".missing"))...).ListModels(); err == nil {
		t.Fatal("want an error for a missing CA file")
	}
}
