package grpcclient

// Against a running server; skipped unless PLUTOS_TEST_GRPC_TARGET (e.g. localhost:50051),
// PLUTOS_TEST_API_KEY and PLUTOS_TEST_MODEL are set.

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	plutos "github.com/plutos-ai/go-sdk"
	plutosv1 "github.com/plutos-ai/go-sdk/gen/plutos/v1"
)

func liveClient(t *testing.T, key string) (*Client, string) {
	t.Helper()
	target, apiKey, model := os.Getenv("PLUTOS_TEST_GRPC_TARGET"), os.Getenv("PLUTOS_TEST_API_KEY"), os.Getenv("PLUTOS_TEST_MODEL")
	if target == "" || apiKey == "" || model == "" {
		t.Skip("set PLUTOS_TEST_GRPC_TARGET, PLUTOS_TEST_API_KEY and PLUTOS_TEST_MODEL to run live gRPC tests")
	}
	if key == "" {
		key = apiKey
	}
	c, err := New(target, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, model
}

func TestLiveGRPCProcessAndStream(t *testing.T) {
	c, model := liveClient(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	maxTokens := int32(16)
	opts := &plutosv1.ProcessOptions{MaxTokens: &maxTokens}

	models, err := c.Models.ListModels(ctx, &plutosv1.ListModelsRequest{})
	if err != nil || len(models.GetModels()) == 0 {
		t.Fatalf("%v %v", models, err)
	}
	res, err := c.Processing.Process(ctx, &plutosv1.ProcessRequest{Input: "Say hello.", Model: model, Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.GetId(), "proc_") {
		t.Fatalf("%v", res)
	}

	s, err := c.Processing.Stream(ctx, &plutosv1.StreamRequest{Input: "Count to five.", Model: model, Options: opts})
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
		} else if msg.GetComplete() != nil {
			final = msg.GetComplete()
		}
	}
	if final == nil || final.GetOutput() != text {
		t.Fatalf("final %v, text %q", final, text)
	}
}

func TestLiveGRPCWrongKey(t *testing.T) {
	c, _ := liveClient(t, "not-a-real-key")
	_, err := c.Models.ListModels(context.Background(), &plutosv1.ListModelsRequest{})
	apiErr := AsAPIError(err)
	if !plutos.IsAuthentication(apiErr) || apiErr.Code != plutos.CodeInvalidAPIKey {
		t.Fatalf("%+v", apiErr)
	}
	if apiErr.RequestID == "" {
		t.Errorf("no request id on %v", apiErr)
	}
}
