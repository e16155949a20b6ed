package plutos

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// recorded is one request the test server saw.
type recorded struct {
	Method string
	Path   string
	Query  string
	Header http.Header
	Body   []byte
	At     time.Time
}

// testServer answers the n-th request with handlers[n] (the last one repeats) and records it.
type testServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests []recorded
}

func newTestServer(t *testing.T, handlers ...http.HandlerFunc) *testServer {
	t.Helper()
	ts := &testServer{}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts.mu.Lock()
		ts.requests = append(ts.requests, recorded{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Clone(), body, time.Now()})
		n := len(ts.requests)
		ts.mu.Unlock()
		i := n - 1
		if i >= len(handlers) {
			i = len(handlers) - 1
		}
		handlers[i](w, r)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func (ts *testServer) Requests() []recorded {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]recorded(nil), ts.requests...)
}

func (ts *testServer) client(opts ...Option) *Client {
	base := []Option{WithBaseURL(ts.URL + "/v1"), WithRetryBackoff(5*time.Millisecond, 20*time.Millisecond)}
	return NewClient("sk-test", "development", append(base, opts...)...)
}

func jsonHandler(status int, body any, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
	}
}

func errorHandler(status int, code, message string, details map[string]any, headers ...string) http.HandlerFunc {
	return jsonHandler(status, map[string]any{"error": map[string]any{
		"code": code, "message": message, "details": details, "requestId": "req_test",
	}}, headers...)
}

var okProcess = jsonHandler(200, map[string]any{
	"id": "proc_0123456789abcdef", "output": "Paris.", "model": "m",
	"usage":     map[string]any{"promptTokens": 3, "completionTokens": 2, "totalTokens": 5},
	"createdAt": "2024-01-01T12:00:00Z", "processingTime": 12,
})
