package grpcclient

import (
	"google.golang.org/grpc/credentials"

	plutos "github.com/plutos-ai/go-sdk"
)

// TLSCredentials are transport credentials trusting the PEM CA bundle caFile ("" : the system's
// roots) and, when certFile and keyFile are given, presenting that client certificate (mTLS, which a
// server with tls_client_ca_file requires):
//
//	creds, err := grpcclient.TLSCredentials("ca.pem", "client.pem", "client.key")
//	if err != nil { ... }
//	c, err := grpcclient.New("gateway.internal:50051", apiKey, grpc.WithTransportCredentials(creds))
func TLSCredentials(caFile, certFile, keyFile string) (credentials.TransportCredentials, error) {
	cfg, err := plutos.TLSConfig(caFile, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(cfg), nil
}
