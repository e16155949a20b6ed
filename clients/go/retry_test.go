package plutos

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestRetryableStatusesAreRetried(t *testing.T) {
	for _, c := range []struct {
		status int
		code   string
	}{{429, CodeRateLimitExceeded}, {502, CodeUpstreamError}, {503, CodeServiceUnavailable}, {504, CodeTimeout}} {
		t.Run(c.code, func(t *testing.T) {
			ts := newTestServer(t, errorHandler(c.status, c.code, "try again", nil), okProcess)
			res, err := ts.client().ProcessData(ProcessRequest{Input: "x", Model: "m"})
			if err != nil {
				t.Fatal(err)
			}
			reqs := ts.Requests()
			if res.Output != "Paris." || len(reqs) != 2 || string(reqs[0].Body) != string(reqs[1].Body) {
				t.Fatalf("%d requests, output %q", len(reqs), res.Output)
			}
		})
	}
}

func TestOtherErrorsAreNotRetried(t *testing.T) {
	for _, c := range []struct {
		status int
		code   string
	}{{400, CodeInvalidParameters}, {401, CodeInvalidAPIKey}, {404, CodeNotFound}, {429, CodeInsufficientQuota}, {500, CodeInternalError}} {
		t.Run(c.code, func(t *testing.T) {
			ts := newTestServer(t, errorHandler(c.status, c.code, "no", nil), okProcess)
			if _, err := ts.client().ProcessData(ProcessRequest{Input: "x", Model: "m"}); err == nil {
				t.Fatal("no error")
			}
			if n := len(ts.Requests()); n != 1 {
				t.Fatalf("%d requests", n)
			}
		})
	}
}

func TestRetriesStopAfterMaxRetries(t *testing.T) {
	ts := newTestServer(t, errorHandler(503, CodeServiceUnavailable, "busy", nil))
	_, err := ts.client().ListModels()
	if !IsServerError(err) || len(ts.Requests()) != 3 {
		t.Fatalf("default: %d requests, %v", len(ts.Requests()), err)
	}
	ts2 := newTestServer(t, errorHandler(503, CodeServiceUnavailable, "busy", nil))
	_, _ = ts2.client(WithMaxRetries(4)).ListModels()
	if n := len(ts2.Requests()); n != 5 {
		t.Fatalf("WithMaxRetries(4): %d requests", n)
	}
	ts3 := newTestServer(t, errorHandler(503, CodeServiceUnavailable, "busy", nil))
	_, _ = ts3.client(WithMaxRetries(0)).ListModels()
	if n := len(ts3.Requests()); n != 1 {
		t.Fatalf("WithMaxRetries(0): %d requests", n)
	}
}

func TestBackoffGrowsExponentially(t *testing.T) {
	ts := newTestServer(t, errorHandler(503, CodeServiceUnavailable, "busy", nil))
	_, _ = ts.client(WithMaxRetries(3), WithRetryBackoff(100*time.Millisecond, 10*time.Second)).ListModels()
	reqs := ts.Requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests", len(reqs))
	}
	// Equal jitter: retry n waits between 100ms*2^n/2 and 100ms*2^n.
	for i, min := range []time.Duration{50, 100, 200} {
		if gap := reqs[i+1].At.Sub(reqs[i].At); gap < (min-5)*time.Millisecond {
			t.Errorf("gap %d: %v", i, gap)
		}
	}
}

func TestBackoffDelays(t *testing.T) {
	p := retryPolicy{maxRetries: 10, initialDelay: 100 * time.Millisecond, maxDelay: time.Second, maxRetryAfter: time.Minute}
	err := &APIError{Status: 503}
	for retry, max := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		for range 20 {
			d, ok := p.delay(err, retry)
			if !ok || d < max*time.Millisecond/2 || d > max*time.Millisecond {
				t.Fatalf("retry %d: %v", retry, d)
			}
		}
	}
	if _, ok := p.delay(err, 10); ok {
		t.Fatal("retried past maxRetries")
	}
	if d, ok := p.delay(&APIError{Status: 429, Code: CodeRateLimitExceeded, RetryAfter: 3 * time.Second}, 0); !ok || d != 3*time.Second {
		t.Fatalf("Retry-After: %v", d)
	}
	if _, ok := p.delay(&APIError{Status: 429, Code: CodeRateLimitExceeded, RetryAfter: time.Hour}, 0); ok {
		t.Fatal("waited for an hour-long Retry-After")
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	ts := newTestServer(t, errorHandler(429, CodeRateLimitExceeded, "wait", map[string]any{"retryAfter": 1}, "Retry-After", "1"), okProcess)
	if _, err := ts.client().ProcessData(ProcessRequest{Input: "x", Model: "m"}); err != nil {
		t.Fatal(err)
	}
	reqs := ts.Requests()
	if gap := reqs[1].At.Sub(reqs[0].At); gap < 950*time.Millisecond {
		t.Fatalf("waited only %v", gap)
	}
}

func TestDetailsRetryAfterIsHonouredWithoutHeader(t *testing.T) {
	ts := newTestServer(t, errorHandler(503, CodeServiceUnavailable, "busy", map[string]any{"retryAfter": 0.5}), okProcess)
	if _, err := ts.client().ListModels(); err != nil {
		t.Fatal(err)
	}
	reqs := ts.Requests()
	if gap := reqs[1].At.Sub(reqs[0].At); gap < 450*time.Millisecond {
		t.Fatalf("waited only %v", gap)
	}
}

func TestLongRetryAfterIsReturnedNotWaitedFor(t *testing.T) {
	ts := newTestServer(t, errorHandler(429, CodeRateLimitExceeded, "wait", nil, "Retry-After", "3600"), okProcess)
	start := time.Now()
	_, err := ts.client().ListModels()
	if !IsRateLimit(err) || time.Since(start) > 2*time.Second || len(ts.Requests()) != 1 {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
	if e, _ := asAPIError(err); e.RetryAfter != time.Hour {
		t.Fatalf("RetryAfter %v", e.RetryAfter)
	}
}

func TestDroppedConnectionsAreRetried(t *testing.T) {
	ts := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}, okProcess)
	if _, err := ts.client().ListModels(); err != nil {
		t.Fatal(err)
	}
	if n := len(ts.Requests()); n != 2 {
		t.Fatalf("%d requests", n)
	}
}

func TestRefusedConnectionsEndInConnectionError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := NewClient("k", "development", WithBaseURL("http://"+addr+"/v1"), WithRetryBackoff(time.Millisecond, 5*time.Millisecond))
	_, err = c.ListModels()
	var connErr *ConnectionError
	if !errors.As(err, &connErr) || connErr.Timeout() || !IsRetryable(err) {
		t.Fatalf("%T %v", err, err)
	}
}

func TestSlowAttemptsTimeOutAndAreRetried(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}
	ts := newTestServer(t, slow, okProcess)
	if _, err := ts.client(WithTimeout(200 * time.Millisecond)).ListModels(); err != nil {
		t.Fatal(err)
	}
	if n := len(ts.Requests()); n != 2 {
		t.Fatalf("%d requests", n)
	}
	ts2 := newTestServer(t, slow)
	_, err := ts2.client(WithTimeout(100*time.Millisecond), WithMaxRetries(1)).ListModels()
	var connErr *ConnectionError
	if !errors.As(err, &connErr) || !connErr.Timeout() {
		t.Fatalf("%T %v", err, err)
	}
	if n := len(ts2.Requests()); n != 2 {
		t.Fatalf("%d requests", n)
	}
}

func TestCancelledContextStopsAtOnce(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	ts := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := ts.client().ListModelsWithContext(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || len(ts.Requests()) != 1 {
		t.Fatalf("%v, %d requests", err, len(ts.Requests()))
	}
}

func TestCancellingDuringBackoffStopsRetries(t *testing.T) {
	ts := newTestServer(t, errorHandler(503, CodeServiceUnavailable, "busy", nil, "Retry-After", "5"))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(150*time.Millisecond, cancel)
	start := time.Now()
	_, err := ts.client().ListModelsWithContext(ctx)
	if !errors.Is(err, context.Canceled) || time.Since(start) > 2*time.Second || len(ts.Requests()) != 1 {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
}
