package grpcclient

// Against a server in TLS mode with tls_client_ca_file (mTLS on gRPC; tests/test_tls.py runs these);
// skipped unless PLUTOS_TEST_TLS_GRPC_TARGET, PLUTOS_TEST_TLS_CA_FILE, PLUTOS_TEST_TLS_CLIENT_CERT and
// PLUTOS_TEST_TLS_CLIENT_KEY are set.

import (
	"context"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	plutos "github.com/plutos-ai/go-sdk"
	plutosv1 "github.com/plutos-ai/go-sdk/gen/plutos/v1"
)

func TestTLSLiveGRPCWithAClientCertificate(t *testing.T) {
	target, ca := os.Getenv("PLUTOS_TEST_TLS_GRPC_TARGET"), os.Getenv("PLUTOS_TEST_TLS_CA_FILE")
	cert, key := os.Getenv("PLUTOS_TEST_TLS_CLIENT_CERT"), os.Getenv("PLUTOS_TEST_TLS_CLIENT_KEY")
	if target == "" || ca == "" || cert == "" || key == "" {
		t.Skip("set PLUTOS_TEST_TLS_GRPC_TARGET, PLUTOS_TEST_TLS_CA_FILE, PLUTOS_TEST_TLS_CLIENT_CERT, PLUTOS_TEST_TLS_CLIENT_KEY")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call := func(certFile, keyFile string) error {
		creds, err := TLSCredentials(ca, certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		c, err := New(target, "pk_wrong", grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Models.ListModels(ctx, &plutosv1.ListModelsRequest{})
		return err
	}
	// With the client certificate, TLS passes and the key does not.
	if err := call(cert, key); AsAPIError(err) == nil || !plutos.IsAuthentication(AsAPIError(err)) {
		t.Fatalf("want invalid_api_key over mTLS, got %v", err)
	}
	// Without one, the server refuses the handshake.
	if err := call("", ""); status.Code(err) != codes.Unavailable {
		t.Fatalf("want UNAVAILABLE without a client certificate, got %v", err)
	}
	if _, err := TLSCredentials(ca, cert, ""); err == nil {
		t.Fatal("a certificate without its key must be refused")
	}
}
