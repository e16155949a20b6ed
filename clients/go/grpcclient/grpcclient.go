// Package grpcclient connects to the PlutosAI gRPC server (plutos.v1.ProcessingService,
// ModelsService, UsageService, WebhooksService, and the management services KeysService and
// AdminService) with the API key attached to every call as
// `authorization: Bearer <key>` metadata, and turns rich gRPC statuses into *plutos.APIError.
//
//	c, err := grpcclient.New("localhost:50051", apiKey)
//	if err != nil { ... }
//	defer c.Close()
//	res, err := c.Processing.Process(ctx, &plutosv1.ProcessRequest{Input: "Hi", Model: "m"})
//	if apiErr := grpcclient.AsAPIError(err); apiErr != nil && plutos.IsRateLimit(apiErr) { ... }
//
// Management: c.Keys (CreateKey, ListKeys, GetKey, UpdateKey, RotateKey, RevokeKey; a key with the
// `keys` scope, or an admin key with AccountId set), c.Admin (CreateAccount, ListAccounts,
// GetAccount, UpdateAccount, ListAuditEvents; an admin key), c.Processing.ListProcesses (request
// history), c.Usage.GetDailyUsage, c.Webhooks.ListWebhookDeliveries / RedeliverWebhookDelivery /
// TestWebhook. A failed call's request id: RequestID(err); a successful unary call's is its
// `x-request-id` trailer (pass grpc.Trailer(&md)), a stream's its header.
package grpcclient

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	plutos "github.com/plutos-ai/go-sdk"
	plutosv1 "github.com/plutos-ai/go-sdk/gen/plutos/v1"
)

// DefaultTarget is the gRPC address of a local server.
const DefaultTarget = "localhost:50051"

// Client holds one connection and a stub per service.
type Client struct {
	conn       *grpc.ClientConn
	Processing plutosv1.ProcessingServiceClient
	Models     plutosv1.ModelsServiceClient
	Usage      plutosv1.UsageServiceClient
	Webhooks   plutosv1.WebhooksServiceClient
	// Keys manages API keys (the `keys` scope; another account's with the `admin` scope).
	Keys plutosv1.KeysServiceClient
	// Admin manages accounts and reads the audit trail (the `admin` scope).
	Admin plutosv1.AdminServiceClient
}

// New connects to target ("" means $PLUTOS_GRPC_TARGET, else localhost:50051) with apiKey
// ("" means $PLUTOS_API_KEY). The connection is plaintext unless opts carry transport
// credentials, e.g. grpc.WithTransportCredentials(credentials.NewTLS(nil)).
func New(target, apiKey string, opts ...grpc.DialOption) (*Client, error) {
	if target == "" {
		target = os.Getenv("PLUTOS_GRPC_TARGET")
	}
	if target == "" {
		target = DefaultTarget
	}
	if apiKey == "" {
		apiKey = os.Getenv("PLUTOS_API_KEY")
	}
	if apiKey == "" {
		return nil, errors.New("plutos: no API key: pass one to grpcclient.New or set PLUTOS_API_KEY")
	}
	all := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(BearerToken(apiKey)),
		grpc.WithChainUnaryInterceptor(unaryRequestID),
		grpc.WithChainStreamInterceptor(streamRequestID),
	}, opts...)
	conn, err := grpc.NewClient(target, all...)
	if err != nil {
		return nil, fmt.Errorf("plutos: dialing %s: %w", target, err)
	}
	return &Client{
		conn:       conn,
		Processing: plutosv1.NewProcessingServiceClient(conn),
		Models:     plutosv1.NewModelsServiceClient(conn),
		Usage:      plutosv1.NewUsageServiceClient(conn),
		Webhooks:   plutosv1.NewWebhooksServiceClient(conn),
		Keys:       plutosv1.NewKeysServiceClient(conn),
		Admin:      plutosv1.NewAdminServiceClient(conn),
	}, nil
}

// Conn returns the underlying connection.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// BearerToken is per-RPC credentials sending `authorization: Bearer <apiKey>`. It does not
// insist on TLS, so it also works with a plaintext local server.
func BearerToken(apiKey string) credentials.PerRPCCredentials { return bearer(apiKey) }

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

// httpStatusForCode is the standard gRPC -> HTTP mapping, for statuses without ErrorInfo.
var httpStatusForCode = map[codes.Code]int{
	codes.InvalidArgument:   400,
	codes.Unauthenticated:   401,
	codes.PermissionDenied:  403,
	codes.NotFound:          404,
	codes.ResourceExhausted: 429,
	codes.Internal:          500,
	codes.Unknown:           502,
	codes.Unimplemented:     501,
	codes.Unavailable:       503,
	codes.DeadlineExceeded:  504,
	codes.Canceled:          499,
}

var codeForGRPC = map[codes.Code]string{
	codes.InvalidArgument:   plutos.CodeInvalidParameters,
	codes.Unauthenticated:   plutos.CodeInvalidAPIKey,
	codes.PermissionDenied:  plutos.CodePermissionDenied,
	codes.NotFound:          plutos.CodeNotFound,
	codes.ResourceExhausted: plutos.CodeRateLimitExceeded,
	codes.Internal:          plutos.CodeInternalError,
	codes.Unknown:           plutos.CodeUpstreamError,
	codes.Unimplemented:     plutos.CodeNotImplemented,
	codes.Unavailable:       plutos.CodeServiceUnavailable,
	codes.DeadlineExceeded:  plutos.CodeTimeout,
	codes.Canceled:          plutos.CodeCancelled,
}

// AsAPIError converts a gRPC error into the *plutos.APIError the REST API would have answered:
// Code from ErrorInfo.reason, Details from the google.protobuf.Struct detail (else ErrorInfo
// metadata), RetryAfter from RetryInfo. It returns nil for nil and for errors that carry no
// gRPC status. The plutos.Is* helpers work on the result.
func AsAPIError(err error) *plutos.APIError {
	if err == nil {
		return nil
	}
	var apiErr *plutos.APIError
	if errors.As(err, &apiErr) {
		return apiErr
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() == codes.OK {
		return nil
	}
	out := &plutos.APIError{Code: codeForGRPC[st.Code()], Message: st.Message(), RequestID: RequestID(err)}
	var metadata map[string]string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			out.Code = d.GetReason()
			metadata = d.GetMetadata()
			if id := metadata["requestId"]; id != "" && out.RequestID == "" {
				out.RequestID = id
			}
		case *structpb.Struct:
			out.Details = d.AsMap()
		case *errdetails.RetryInfo:
			out.RetryAfter = d.GetRetryDelay().AsDuration()
		case *errdetails.RequestInfo:
			if out.RequestID == "" {
				out.RequestID = d.GetRequestId()
			}
		}
	}
	if out.Details == nil && len(metadata) > 0 {
		out.Details = make(map[string]any, len(metadata))
		for k, v := range metadata {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				out.Details[k] = f
			} else {
				out.Details[k] = v
			}
		}
	}
	if out.Code == "" {
		out.Code = plutos.CodeInternalError
	}
	if s, ok := plutos.CodeStatus[out.Code]; ok {
		out.Status = s
	} else if s, ok := httpStatusForCode[st.Code()]; ok {
		out.Status = s
	} else {
		out.Status = 500
	}
	if out.RetryAfter == 0 {
		if secs, ok := out.Details["retryAfter"].(float64); ok && secs > 0 {
			out.RetryAfter = time.Duration(secs * float64(time.Second))
		}
	}
	return out
}
