package plutos_test

// Against a running server; skipped unless PLUTOS_TEST_BASE_URL, PLUTOS_TEST_API_KEY and
// PLUTOS_TEST_MODEL are all set:
//
//	PLUTOS_TEST_BASE_URL=http://localhost:3000/v1 PLUTOS_TEST_API_KEY=... PLUTOS_TEST_MODEL=... go test ./...

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	plutos "github.com/plutos-ai/go-sdk"
)

type liveConfig struct{ baseURL, apiKey, model string }

func live(t *testing.T) liveConfig {
	t.Helper()
	cfg := liveConfig{os.Getenv("PLUTOS_TEST_BASE_URL"), os.Getenv("PLUTOS_TEST_API_KEY"), os.Getenv("PLUTOS_TEST_MODEL")}
	if cfg.baseURL == "" || cfg.apiKey == "" || cfg.model == "" {
		t.Skip("set PLUTOS_TEST_BASE_URL, PLUTOS_TEST_API_KEY and PLUTOS_TEST_MODEL to run live tests")
	}
	return cfg
}

func (c liveConfig) client() *plutos.Client {
	return plutos.NewClient(c.apiKey, "development", plutos.WithBaseURL(c.baseURL), plutos.WithTimeout(2*time.Minute))
}

var short = plutos.NewProcessOptions(plutos.MaxTokens(16), plutos.Temperature(0))

// TestLiveReferenceExample runs examples/quickstart (the reference's Go example) with `go run`,
// swapping in only the key and model; the base URL comes from PLUTOS_BASE_URL.
func TestLiveReferenceExample(t *testing.T) {
	cfg := live(t)
	src, err := os.ReadFile(filepath.Join("examples", "quickstart", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	patched := strings.Replace(string(src), `"your-api-key"`, strconv.Quote(cfg.apiKey), 1)
	patched = strings.Replace(patched, `"gpt-4"`, strconv.Quote(cfg.model), 1)
	dir := t.TempDir()
	patchedPath := filepath.Join(dir, "main.go")
	if err := os.WriteFile(patchedPath, []byte(patched), 0o644); err != nil {
		t.Fatal(err)
	}
	original, err := filepath.Abs(filepath.Join("examples", "quickstart", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	overlay, _ := json.Marshal(map[string]any{"Replace": map[string]string{original: patchedPath}})
	overlayPath := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(overlayPath, overlay, 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool(t), "run", "-overlay="+overlayPath, "./examples/quickstart")
	cmd.Env = append(os.Environ(), "PLUTOS_BASE_URL="+cfg.baseURL)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go run: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	if strings.TrimSpace(stdout.String()) == "" {
		t.Fatalf("the example printed nothing; stderr: %s", stderr.String())
	}
}

func goTool(t *testing.T) string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		t.Skip("no go tool found")
	}
	return p
}

// TestLiveReferenceExampleLogic is the example's code, in-process.
func TestLiveReferenceExampleLogic(t *testing.T) {
	cfg := live(t)
	t.Setenv("PLUTOS_BASE_URL", cfg.baseURL)
	client := plutos.NewClient(cfg.apiKey, "production")

	result, err := client.ProcessData(plutos.ProcessRequest{
		Input: "What is the capital of France?",
		Model: cfg.model,
		Options: plutos.ProcessOptions{
			Temperature: 0.7,
			MaxTokens:   100,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if result.Output == "" && result.Usage.CompletionTokens > 0 {
		t.Fatalf("empty output: %+v", result)
	}
}

func TestLiveListModels(t *testing.T) {
	cfg := live(t)
	res, err := cfg.client().ListModels()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range res.Models {
		if m.ID == cfg.model {
			if m.MaxTokens <= 0 {
				t.Fatalf("%+v", m)
			}
			return
		}
		ids = append(ids, m.ID)
	}
	t.Fatalf("%s not among %v", cfg.model, ids)
}

func TestLiveProcessThenGetProcess(t *testing.T) {
	cfg := live(t)
	c := cfg.client()
	res, err := c.ProcessData(plutos.ProcessRequest{Input: "Say hello.", Model: cfg.model, Options: short})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^proc_`).MatchString(res.ID) || res.Model != cfg.model || res.CreatedAt.IsZero() ||
		res.Usage.TotalTokens != res.Usage.PromptTokens+res.Usage.CompletionTokens {
		t.Fatalf("%+v", res)
	}
	got, err := c.GetProcess(res.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != res.ID || got.Input != "Say hello." || got.Output != res.Output || got.Status != "completed" || got.Options.MaxTokens != 16 {
		t.Fatalf("%+v", got)
	}
}

func TestLiveBatch(t *testing.T) {
	cfg := live(t)
	res, err := cfg.client().Batch(plutos.BatchRequest{Inputs: []string{"One.", "Two."}, Model: cfg.model, Options: short})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 2 || res.Results[0].Input != "One." || res.Results[1].Input != "Two." || !strings.HasPrefix(res.ID, "batch_") {
		t.Fatalf("%+v", res)
	}
}

func TestLiveStream(t *testing.T) {
	cfg := live(t)
	s, err := cfg.client().Stream(plutos.StreamRequest{Input: "Count to five.", Model: cfg.model, Options: short})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var text string
	var final *plutos.StreamEvent
	for s.Next() {
		ev := s.Event()
		if ev.IsFinal() {
			final = &ev
		} else {
			if ev.Chunk != "partial" {
				t.Fatalf("%+v", ev)
			}
			text += ev.Output
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if final == nil || final.Chunk != "final" || final.Output != text || !strings.HasPrefix(final.ID, "proc_") || final.Usage == nil {
		t.Fatalf("final %+v, text %q", final, text)
	}
}

func TestLiveUsage(t *testing.T) {
	cfg := live(t)
	today := time.Now().UTC().Format("2006-01-02")
	u, err := cfg.client().GetUsage(plutos.UsageParams{StartDate: today, EndDate: today})
	if err != nil {
		t.Fatal(err)
	}
	if u.Period.Start.IsZero() || u.Limits.RequestsPerMinute <= 0 {
		t.Fatalf("%+v", u)
	}
}

func TestLiveWebhooks(t *testing.T) {
	cfg := live(t)
	c := cfg.client()
	wh, err := c.CreateWebhook(plutos.CreateWebhookRequest{
		URL: "https://example.com/plutos-hook", Events: []string{plutos.WebhookProcessingCompleted}, Secret: "s3cret",
	})
	var apiErr *plutos.APIError
	if errors.As(err, &apiErr) && apiErr.Code == plutos.CodeNotImplemented {
		// A server build without webhooks says so with 501 not_implemented; that is not an SDK fault.
		t.Skipf("server: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(wh.ID, "wh_") || !wh.HasSecret {
		t.Fatalf("%+v", wh)
	}
	list, err := c.ListWebhooks()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, w := range list.Webhooks {
		found = found || w.ID == wh.ID
	}
	if !found {
		t.Fatalf("%s not listed", wh.ID)
	}
	del, err := c.DeleteWebhook(wh.ID)
	if err != nil || !del.Deleted || del.ID != wh.ID {
		t.Fatalf("%+v %v", del, err)
	}
	if _, err := c.DeleteWebhook(wh.ID); !plutos.IsNotFound(err) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestLiveErrors(t *testing.T) {
	cfg := live(t)
	bad := plutos.NewClient("not-a-real-key", "development", plutos.WithBaseURL(cfg.baseURL))
	if _, err := bad.ListModels(); !plutos.IsAuthentication(err) {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := cfg.client().ProcessData(plutos.ProcessRequest{Input: "x", Model: "no-such-model-xyz"}); !plutos.IsInvalidModel(err) {
		t.Fatalf("unknown model: %v", err)
	}
	if _, err := cfg.client().GetProcess("proc_0000000000000000"); !plutos.IsNotFound(err) {
		t.Fatalf("unknown id: %v", err)
	}
}
