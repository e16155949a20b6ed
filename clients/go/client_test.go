package plutos

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestProcessDataSendsTheRequestAndDecodesTheAnswer(t *testing.T) {
	ts := newTestServer(t, okProcess)
	res, err := ts.client().ProcessData(ProcessRequest{
		Input:   "What is the capital of France?",
		Model:   "m",
		Options: ProcessOptions{Temperature: 0.7, MaxTokens: 100, SystemPrompt: "Be brief.", Stop: []string{"\n"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != "proc_0123456789abcdef" || res.Output != "Paris." || res.Usage.TotalTokens != 5 || res.ProcessingTime != 12 {
		t.Fatalf("decoded %+v", res)
	}
	if !res.CreatedAt.Equal(time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)) {
		t.Fatalf("createdAt %v", res.CreatedAt)
	}
	r := ts.Requests()[0]
	if r.Method != "POST" || r.Path != "/v1/process" {
		t.Fatalf("%s %s", r.Method, r.Path)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer sk-test" {
		t.Fatalf("Authorization %q", got)
	}
	if got := r.Header.Get("Content-Type"); got != "application/json" {
		t.Fatalf("Content-Type %q", got)
	}
	if !strings.HasPrefix(r.Header.Get("User-Agent"), "plutos-ai-sdk-go/") {
		t.Fatalf("User-Agent %q", r.Header.Get("User-Agent"))
	}
	var body map[string]any
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	want := `{"input":"What is the capital of France?","model":"m","options":{"maxTokens":100,"stop":["\n"],"systemPrompt":"Be brief.","temperature":0.7}}`
	if got, _ := json.Marshal(body); string(got) != want {
		t.Fatalf("body %s\nwant %s", got, want)
	}
}

func TestZeroOptionsAreLeftOutAndEveryNumericOptionCanBeSentAsZero(t *testing.T) {
	cases := []struct {
		opts ProcessOptions
		want string
	}{
		{ProcessOptions{}, `{"input":"x","model":"m"}`},
		{ProcessOptions{MaxTokens: 5}, `{"input":"x","model":"m","options":{"maxTokens":5}}`},
		{NewProcessOptions(Temperature(0)), `{"input":"x","model":"m","options":{"temperature":0}}`},
		{
			NewProcessOptions(Temperature(0), MaxTokens(0), TopP(0), FrequencyPenalty(0), PresencePenalty(0)),
			`{"input":"x","model":"m","options":{"temperature":0,"maxTokens":0,"topP":0,"frequencyPenalty":0,"presencePenalty":0}}`,
		},
		{
			ProcessOptions{MaxTokens: 7, SystemPrompt: "s"}.With(Temperature(0)),
			`{"input":"x","model":"m","options":{"temperature":0,"maxTokens":7,"systemPrompt":"s"}}`,
		},
	}
	for _, c := range cases {
		got, err := json.Marshal(ProcessRequest{Input: "x", Model: "m", Options: c.opts})
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("%+v: got %s want %s", c.opts, got, c.want)
		}
	}
	var o ProcessOptions
	if err := json.Unmarshal([]byte(`{"temperature":0,"maxTokens":1000,"topP":1}`), &o); err != nil {
		t.Fatal(err)
	}
	if !o.IsSet("temperature") || o.Temperature != 0 || o.MaxTokens != 1000 || o.TopP != 1 || o.IsSet("presencePenalty") {
		t.Fatalf("%+v", o)
	}
	// Read options go back out as they came (temperature 0 included).
	if got, _ := json.Marshal(o); string(got) != `{"temperature":0,"maxTokens":1000,"topP":1}` {
		t.Fatalf("round trip: %s", got)
	}
}

func TestEndpointsUseTheReferenceRoutes(t *testing.T) {
	ts := newTestServer(t, jsonHandler(200, map[string]any{}))
	c := ts.client()
	calls := []struct {
		call         func() error
		method, path string
		query, body  string
	}{
		{func() error { _, err := c.GetProcess("proc_1/x"); return err }, "GET", "/v1/process/proc_1%2Fx", "", ""},
		{func() error { _, err := c.Batch(BatchRequest{Inputs: []string{"a", "b"}, Model: "m"}); return err }, "POST", "/v1/batch", "", `{"inputs":["a","b"],"model":"m"}`},
		{func() error { _, err := c.ListModels(); return err }, "GET", "/v1/models", "", ""},
		{func() error {
			_, err := c.GetUsage(UsageParams{StartDate: "2024-01-01", EndDate: "2024-01-31"})
			return err
		}, "GET", "/v1/usage", "end_date=2024-01-31&start_date=2024-01-01", ""},
		{func() error { _, err := c.GetUsage(UsageParams{}); return err }, "GET", "/v1/usage", "", ""},
		{func() error {
			_, err := c.CreateWebhook(CreateWebhookRequest{URL: "https://example.test/h", Events: []string{WebhookProcessingCompleted}})
			return err
		}, "POST", "/v1/webhooks", "", `{"url":"https://example.test/h","events":["processing.completed"]}`},
		{func() error { _, err := c.ListWebhooks(); return err }, "GET", "/v1/webhooks", "", ""},
		{func() error { _, err := c.DeleteWebhook("wh_0123456789abcdef"); return err }, "DELETE", "/v1/webhooks/wh_0123456789abcdef", "", ""},
	}
	for i, call := range calls {
		if err := call.call(); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		r := ts.Requests()[i]
		path := r.Path
		if r.Method != call.method || path != call.path || r.Query != call.query || strings.TrimSpace(string(r.Body)) != call.body {
			t.Errorf("call %d: got %s %s ?%s %s", i, r.Method, path, r.Query, r.Body)
		}
	}
}

func TestResponsesDecode(t *testing.T) {
	ts := newTestServer(t,
		jsonHandler(200, map[string]any{"models": []any{map[string]any{
			"id": "gpt-4", "name": "GPT-4", "description": "d", "maxTokens": 8192, "supportsStreaming": true,
			"pricing": map[string]any{"inputTokens": 0.03, "outputTokens": 0.06},
		}}}),
		jsonHandler(200, map[string]any{
			"period": map[string]any{"start": "2024-01-01T00:00:00Z", "end": "2024-01-31T23:59:59Z"},
			"usage":  map[string]any{"totalRequests": 3, "totalTokens": 99, "totalCost": 0.5, "requestsByModel": map[string]any{"gpt-4": 3}},
			"limits": map[string]any{"requestsPerMinute": 60, "requestsPerHour": 1000, "requestsPerDay": 10000},
		}),
		jsonHandler(200, map[string]any{"id": "batch_0123456789abcdef", "results": []any{
			map[string]any{"input": "a", "output": "A", "usage": map[string]any{"totalTokens": 2}},
			map[string]any{"input": "b", "output": "", "usage": map[string]any{}, "error": map[string]any{"code": "input_too_long", "message": "too long"}},
		}, "totalUsage": map[string]any{"totalTokens": 2}, "createdAt": "2024-01-01T12:00:00.123Z", "processingTime": 7}),
	)
	c := ts.client()
	models, err := c.ListModels()
	if err != nil {
		t.Fatal(err)
	}
	m := models.Models[0]
	if m.ID != "gpt-4" || m.MaxTokens != 8192 || !m.SupportsStreaming || m.Pricing.OutputTokens != 0.06 {
		t.Fatalf("%+v", m)
	}
	u, err := c.GetUsage(UsageParams{})
	if err != nil {
		t.Fatal(err)
	}
	if u.Usage.TotalRequests != 3 || u.Usage.RequestsByModel["gpt-4"] != 3 || u.Limits.RequestsPerDay != 10000 || u.Period.Start.Month() != time.January {
		t.Fatalf("%+v", u)
	}
	b, err := c.Batch(BatchRequest{Inputs: []string{"a", "b"}, Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Results) != 2 || b.Results[0].Error != nil || b.Results[1].Error == nil || b.Results[1].Error.Code != CodeInputTooLong {
		t.Fatalf("%+v", b)
	}
}

func TestEnvironmentsAndEnvironmentVariables(t *testing.T) {
	t.Setenv("PLUTOS_BASE_URL", "")
	t.Setenv("PLUTOS_API_KEY", "")
	for env, want := range map[string]string{
		"production":  "https://api.plutos-ai.com/v1",
		"staging":     "https://staging-api.plutos-ai.com/v1",
		"development": "http://localhost:3000/v1",
		"":            "https://api.plutos-ai.com/v1",
	} {
		if got := NewClient("k", env).BaseURL(); got != want {
			t.Errorf("%q: %s, want %s", env, got, want)
		}
	}
	t.Setenv("PLUTOS_BASE_URL", "http://127.0.0.1:9/v1/")
	if got := NewClient("k", "production").BaseURL(); got != "http://127.0.0.1:9/v1" {
		t.Errorf("PLUTOS_BASE_URL ignored: %s", got)
	}
	if got := NewClient("k", "production", WithBaseURL("http://h:1/v1")).BaseURL(); got != "http://h:1/v1" {
		t.Errorf("WithBaseURL ignored: %s", got)
	}
}

func TestAPIKeyFallsBackToTheEnvironment(t *testing.T) {
	ts := newTestServer(t, jsonHandler(200, map[string]any{"models": []any{}}))
	t.Setenv("PLUTOS_API_KEY", "from-env")
	c := NewClient("", "development", WithBaseURL(ts.URL+"/v1"))
	if _, err := c.ListModels(); err != nil {
		t.Fatal(err)
	}
	if got := ts.Requests()[0].Header.Get("Authorization"); got != "Bearer from-env" {
		t.Fatalf("Authorization %q", got)
	}
}

func TestConfigurationMistakesAreReportedByCalls(t *testing.T) {
	t.Setenv("PLUTOS_API_KEY", "")
	t.Setenv("PLUTOS_BASE_URL", "")
	if _, err := NewClient("", "production").ListModels(); err == nil || !strings.Contains(err.Error(), "API key") {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := NewClient("k", "prod").ListModels(); err == nil || !strings.Contains(err.Error(), "unknown environment") {
		t.Fatalf("bad environment: %v", err)
	}
}

func TestCustomHTTPClientIsUsed(t *testing.T) {
	ts := newTestServer(t, jsonHandler(200, map[string]any{}))
	used := false
	hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		used = true
		return http.DefaultTransport.RoundTrip(r)
	})}
	if _, err := ts.client(WithHTTPClient(hc)).ListModels(); err != nil {
		t.Fatal(err)
	}
	if !used {
		t.Fatal("WithHTTPClient was ignored")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestResultsCarryTheRequestID(t *testing.T) {
	ts := newTestServer(t,
		jsonHandler(200, map[string]any{"id": "proc_1", "output": "ok"}, "X-Request-Id", "req_abc"),
		jsonHandler(200, map[string]any{"models": []any{}}, "X-Request-Id", "req_def"),
	)
	client := ts.client()
	result, err := client.ProcessData(ProcessRequest{Input: "x", Model: "m"})
	if err != nil || result.RequestID != "req_abc" || result.Output != "ok" {
		t.Fatalf("ProcessData = %+v, %v", result, err)
	}
	models, err := client.ListModels()
	if err != nil || models.RequestID != "req_def" {
		t.Fatalf("ListModels = %+v, %v", models, err)
	}
}

func TestWithOptionsAppliesPerRequestSettings(t *testing.T) {
	ts := newTestServer(t, jsonHandler(200, map[string]any{"models": []any{}}))
	client := ts.client()
	derived := client.WithOptions(WithHeader("X-Trace", "t1"), WithMaxRetries(0), WithHeader("Authorization", "Bearer nope"))
	if _, err := derived.ListModels(); err != nil {
		t.Fatal(err)
	}
	if _, err := client.ListModels(); err != nil {
		t.Fatal(err)
	}
	reqs := ts.Requests()
	if got := reqs[0].Header.Get("X-Trace"); got != "t1" {
		t.Errorf("derived client sent X-Trace %q", got)
	}
	if got := reqs[0].Header.Get("Authorization"); got == "Bearer nope" {
		t.Errorf("an extra header replaced Authorization")
	}
	if got := reqs[1].Header.Get("X-Trace"); got != "" {
		t.Errorf("the original client sent X-Trace %q", got)
	}
	if derived.retry.maxRetries != 0 || client.retry.maxRetries == 0 {
		t.Errorf("retries: derived %d, original %d", derived.retry.maxRetries, client.retry.maxRetries)
	}
}

func TestWithResponseIntoGivesTheRawResponse(t *testing.T) {
	ts := newTestServer(t, jsonHandler(200, map[string]any{"models": []any{}}, "X-RateLimit-Remaining", "41"))
	var raw *http.Response
	if _, err := ts.client().WithOptions(WithResponseInto(&raw)).ListModels(); err != nil {
		t.Fatal(err)
	}
	if raw == nil || raw.StatusCode != 200 || raw.Header.Get("X-RateLimit-Remaining") != "41" {
		t.Fatalf("raw response = %+v", raw)
	}
}
