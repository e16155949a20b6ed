package plutos_test

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	plutos "github.com/plutos-ai/go-sdk"
)

func TestWithCAFileTrustsAPrivateCA(t *testing.T) {
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"models":[]}`))
	}))
	defer ts.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	block := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})
	if err := os.WriteFile(ca, block, 0o600); err != nil {
		t.Fatal(err)
	}
	opts := []plutos.Option{plutos.WithBaseURL(ts.URL + "/v1"), plutos.WithMaxRetries(0)}
	if _, err := plutos.NewClient("k", "", append(opts, plutos.WithCAFile(ca))...).ListModels(); err != nil {
		t.Fatalf("with the CA file: %v", err)
	}
	plain := plutos.NewClient("k", "", opts...)
	if _, err := plain.ListModels(); err == nil {
		t.Fatal("without the CA file the certificate must not verify")
	}
	// Per request, on a client without it.
	if _, err := plain.WithOptions(plutos.WithCAFile(ca)).ListModels(); err != nil {
		t.Fatalf("WithOptions(WithCAFile): %v", err)
	}
	if _, err := plutos.TLSConfig(ca, "client.pem", ""); err == nil {
		t.Fatal("a certificate without its key must be refused")
	}
}
