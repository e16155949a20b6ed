package plutos

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestErrorEnvelopesBecomeAPIErrors(t *testing.T) {
	cases := []struct {
		status int
		code   string
		is     func(error) bool
	}{
		{401, CodeInvalidAPIKey, IsAuthentication},
		{403, CodePermissionDenied, IsPermissionDenied},
		{404, CodeNotFound, IsNotFound},
		{400, CodeInvalidParameters, IsInvalidParameters},
		{400, CodeInvalidModel, IsInvalidModel},
		{400, CodeInputTooLong, IsInputTooLong},
		{429, CodeRateLimitExceeded, IsRateLimit},
		{429, CodeInsufficientQuota, IsInsufficientQuota},
		{500, CodeInternalError, IsServerError},
		{502, CodeUpstreamError, IsServerError},
		{503, CodeServiceUnavailable, IsServerError},
		{504, CodeTimeout, IsServerError},
	}
	for _, c := range cases {
		t.Run(c.code, func(t *testing.T) {
			ts := newTestServer(t, errorHandler(c.status, c.code, "msg "+c.code, map[string]any{"k": "v"}))
			_, err := ts.client(WithMaxRetries(0)).ProcessData(ProcessRequest{Input: "x", Model: "m"})
			var apiErr *APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("got %T %v", err, err)
			}
			if apiErr.Status != c.status || apiErr.Code != c.code || apiErr.Message != "msg "+c.code ||
				apiErr.RequestID != "req_test" || apiErr.Details["k"] != "v" {
				t.Fatalf("%+v", apiErr)
			}
			if !c.is(err) {
				t.Fatalf("helper did not recognise %v", err)
			}
			if CodeStatus[c.code] != c.status {
				t.Fatalf("CodeStatus[%s] = %d", c.code, CodeStatus[c.code])
			}
			if !strings.Contains(err.Error(), c.code) || !strings.Contains(err.Error(), "req_test") {
				t.Fatalf("message %q", err.Error())
			}
		})
	}
}

func TestHelpersTellRateLimitFromQuota(t *testing.T) {
	rl := &APIError{Status: 429, Code: CodeRateLimitExceeded}
	q := &APIError{Status: 429, Code: CodeInsufficientQuota}
	if !IsRateLimit(rl) || IsRateLimit(q) || !IsInsufficientQuota(q) || IsInsufficientQuota(rl) {
		t.Fatal("rate limit vs quota confused")
	}
	if !IsRetryable(rl) || IsRetryable(q) {
		t.Fatal("retryability wrong")
	}
	wrapped := errors.Join(errors.New("context"), rl)
	if !IsRateLimit(wrapped) {
		t.Fatal("helpers must see through wrapping")
	}
}

func TestRequestIDFallsBackToTheHeader(t *testing.T) {
	ts := newTestServer(t, jsonHandler(404, map[string]any{"error": map[string]any{"code": "not_found", "message": "no"}}, "X-Request-Id", "req_hdr"))
	_, err := ts.client().GetProcess("p")
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.RequestID != "req_hdr" {
		t.Fatalf("%v", err)
	}
}

func TestNonJSONErrorBodies(t *testing.T) {
	ts := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(502)
		_, _ = w.Write([]byte("<html>Bad Gateway</html>"))
	})
	_, err := ts.client(WithMaxRetries(0)).ListModels()
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 502 || apiErr.Code != "http_502" || !strings.Contains(apiErr.Message, "Bad Gateway") {
		t.Fatalf("%v", err)
	}
}

func TestRetryAfterIsReadFromHeaderOrDetails(t *testing.T) {
	ts := newTestServer(t,
		errorHandler(429, CodeRateLimitExceeded, "slow", map[string]any{"retryAfter": 60}, "Retry-After", "60"),
		errorHandler(429, CodeRateLimitExceeded, "slow", map[string]any{"retryAfter": 120}),
	)
	c := ts.client(WithMaxRetries(0))
	_, err := c.ListModels()
	if e, ok := asAPIError(err); !ok || e.RetryAfter != 60*time.Second || e.Header.Get("Retry-After") != "60" {
		t.Fatalf("%v", err)
	}
	_, err = c.ListModels()
	if e, ok := asAPIError(err); !ok || e.RetryAfter != 120*time.Second {
		t.Fatalf("%v", err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"5":                             5 * time.Second,
		"0.25":                          250 * time.Millisecond,
		"Mon, 01 Jan 2024 12:00:30 GMT": 30 * time.Second,
		"-3":                            0,
	} {
		if got, ok := parseRetryAfter(in, now); !ok || got != want {
			t.Errorf("%q: %v %v", in, got, ok)
		}
	}
	if _, ok := parseRetryAfter("soon", now); ok {
		t.Error("garbage accepted")
	}
}
