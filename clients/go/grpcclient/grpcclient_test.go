package grpcclient

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	plutos "github.com/plutos-ai/go-sdk"
	plutosv1 "github.com/plutos-ai/go-sdk/gen/plutos/v1"
)

// fakeProcessing stands in for the server: it checks the bearer key and fails like the real
// error interceptor does (ErrorInfo + Struct + RetryInfo, x-request-id metadata).
type fakeProcessing struct {
	plutosv1.UnimplementedProcessingServiceServer
}

func richError(ctx context.Context, code codes.Code, reason, msg string, details map[string]any, retry time.Duration) error {
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-request-id", "req_grpc"))
	st := status.New(code, msg)
	info := &errdetails.ErrorInfo{Reason: reason, Domain: "plutos.ai"}
	msgs := []protoadapt.MessageV1{info}
	if details != nil {
		s, _ := structpb.NewStruct(details)
		msgs = append(msgs, s)
	}
	if retry > 0 {
		msgs = append(msgs, &errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
	}
	withDetails, err := st.WithDetails(msgs...)
	if err != nil {
		panic(err)
	}
	return withDetails.Err()
}

func authorized(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("authorization"); len(v) == 1 && v[0] == "Bearer k" {
		return nil
	}
	return richError(ctx, codes.Unauthenticated, "invalid_api_key", "bad key", nil, 0)
}

func (fakeProcessing) Process(ctx context.Context, req *plutosv1.ProcessRequest) (*plutosv1.ProcessResponse, error) {
	if err := authorized(ctx); err != nil {
		return nil, err
	}
	if req.GetInput() == "slow" {
		return nil, richError(ctx, codes.ResourceExhausted, "rate_limit_exceeded", "slow down", map[string]any{"retryAfter": 7}, 7*time.Second)
	}
	return &plutosv1.ProcessResponse{Id: "proc_0123456789abcdef", Output: "echo: " + req.GetInput(), Model: req.GetModel()}, nil
}

func (fakeProcessing) Stream(req *plutosv1.StreamRequest, srv grpc.ServerStreamingServer[plutosv1.StreamResponse]) error {
	if err := authorized(srv.Context()); err != nil {
		return err
	}
	_ = srv.Send(&plutosv1.StreamResponse{Event: &plutosv1.StreamResponse_Chunk{Chunk: &plutosv1.StreamChunk{Chunk: "partial", Output: "a"}}})
	if req.GetInput() == "fail" {
		return richError(srv.Context(), codes.Unknown, "upstream_error", "backend died", nil, 0)
	}
	_ = srv.Send(&plutosv1.StreamResponse{Event: &plutosv1.StreamResponse_Chunk{Chunk: &plutosv1.StreamChunk{Chunk: "partial", Output: "b"}}})
	return srv.Send(&plutosv1.StreamResponse{Event: &plutosv1.StreamResponse_Complete{Complete: &plutosv1.StreamComplete{Chunk: "final", Output: "ab", Id: "proc_1"}}})
}

func dial(t *testing.T, apiKey string) *Client {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	plutosv1.RegisterProcessingServiceServer(srv, fakeProcessing{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	c, err := New("passthrough:///bufnet", apiKey, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return lis.DialContext(ctx)
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestUnaryCallsCarryTheBearerKey(t *testing.T) {
	c := dial(t, "k")
	res, err := c.Processing.Process(context.Background(), &plutosv1.ProcessRequest{Input: "hi", Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if res.GetOutput() != "echo: hi" {
		t.Fatalf("%v", res)
	}
}

func TestRichStatusesBecomeAPIErrors(t *testing.T) {
	c := dial(t, "k")
	_, err := c.Processing.Process(context.Background(), &plutosv1.ProcessRequest{Input: "slow", Model: "m"})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("the gRPC status must survive: %v", err)
	}
	apiErr := AsAPIError(err)
	if apiErr == nil || apiErr.Code != plutos.CodeRateLimitExceeded || apiErr.Status != 429 || apiErr.RetryAfter != 7*time.Second ||
		apiErr.Details["retryAfter"] != float64(7) || apiErr.RequestID != "req_grpc" || apiErr.Message != "slow down" {
		t.Fatalf("%+v", apiErr)
	}
	if !plutos.IsRateLimit(apiErr) || !plutos.IsRetryable(apiErr) {
		t.Fatal("helpers disagree")
	}
}

func TestAWrongKeyIsAnAuthenticationError(t *testing.T) {
	c := dial(t, "wrong")
	_, err := c.Processing.Process(context.Background(), &plutosv1.ProcessRequest{Input: "hi", Model: "m"})
	if apiErr := AsAPIError(err); !plutos.IsAuthentication(apiErr) || apiErr.Code != plutos.CodeInvalidAPIKey {
		t.Fatalf("%+v", apiErr)
	}
}

func TestStreamsDeliverChunksThenComplete(t *testing.T) {
	c := dial(t, "k")
	s, err := c.Processing.Stream(context.Background(), &plutosv1.StreamRequest{Input: "hi", Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	var text string
	var final *plutosv1.StreamComplete
	for {
		msg, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ch := msg.GetChunk(); ch != nil {
			text += ch.GetOutput()
		} else {
			final = msg.GetComplete()
		}
	}
	if text != "ab" || final.GetOutput() != "ab" {
		t.Fatalf("%q %v", text, final)
	}
}

func TestStreamErrorsBecomeAPIErrors(t *testing.T) {
	c := dial(t, "k")
	s, err := c.Processing.Stream(context.Background(), &plutosv1.StreamRequest{Input: "fail", Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	_, err = s.Recv()
	apiErr := AsAPIError(err)
	if apiErr == nil || apiErr.Code != plutos.CodeUpstreamError || apiErr.Status != 502 || apiErr.RequestID != "req_grpc" {
		t.Fatalf("%+v", apiErr)
	}
}

func TestStatusesWithoutErrorInfoMapByCode(t *testing.T) {
	apiErr := AsAPIError(status.Error(codes.DeadlineExceeded, "too slow"))
	if apiErr.Code != plutos.CodeTimeout || apiErr.Status != 504 {
		t.Fatalf("%+v", apiErr)
	}
	if AsAPIError(nil) != nil || AsAPIError(errors.New("plain")) != nil {
		t.Fatal("non-status errors must give nil")
	}
}
