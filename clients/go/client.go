package plutos

import (
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"
)

// Version is the SDK's version, sent in the User-Agent header.
const Version = "0.1.0"

// Environments maps each environment name to its base URL.
var Environments = map[string]string{
	"production":  "https://api.plutos-ai.com/v1",
	"staging":     "https://staging-api.plutos-ai.com/v1",
	"development": "http://localhost:3000/v1",
}

// Defaults.
const (
	DefaultMaxRetries = 2
	DefaultTimeout    = 10 * time.Minute
)

// Client calls the PlutosAI REST API. It is safe for concurrent use.
type Client struct {
	apiKey     string
	baseURL    string
	httpClient *http.Client
	timeout    time.Duration
	retry      retryPolicy
	userAgent  string
	configErr  error
	headers    http.Header // extra headers on every request (WithHeader)
	// responseInto receives each JSON call's *http.Response (WithResponseInto).
	responseInto **http.Response
	// TLS (tls.go): WithCAFile, WithClientCert, WithTLSConfig.
	caFile, certFile, keyFile string
	tlsConfig                 *tls.Config
}

// Option configures a Client.
type Option func(*Client)

// WithBaseURL sets the base URL (e.g. "http://localhost:3000/v1"), overriding the environment
// and PLUTOS_BASE_URL.
func WithBaseURL(baseURL string) Option {
	return func(c *Client) { c.baseURL = baseURL }
}

// WithHTTPClient sets the *http.Client used for requests (default: a new one without an overall
// timeout, since streams are long; per-attempt timeouts come from WithTimeout).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.httpClient = hc
		}
	}
}

// WithHeader adds a header to every request (it cannot replace Authorization, User-Agent, Accept
// or Content-Type).
func WithHeader(name, value string) Option {
	return func(c *Client) {
		if c.headers == nil {
			c.headers = http.Header{}
		}
		c.headers.Set(name, value)
	}
}

// WithResponseInto stores the HTTP response of each JSON call in *dst (status, headers; its body is
// already read and closed): client.WithOptions(plutos.WithResponseInto(&resp)).ProcessData(req).
func WithResponseInto(dst **http.Response) Option {
	return func(c *Client) { c.responseInto = dst }
}

// WithOptions returns a client sharing this one's connections with the options applied on top:
// per-request settings, as in client.WithOptions(plutos.WithTimeout(5 * time.Second)).ProcessData(req).
func (c *Client) WithOptions(opts ...Option) *Client {
	clone := *c
	clone.headers = c.headers.Clone()
	for _, opt := range opts {
		opt(&clone)
	}
	if clone.caFile != c.caFile || clone.certFile != c.certFile || clone.keyFile != c.keyFile || clone.tlsConfig != c.tlsConfig {
		clone.applyTLS() // TLS options given per request: a transport of its own
	}
	clone.baseURL = strings.TrimRight(clone.baseURL, "/")
	return &clone
}

// WithMaxRetries sets how many times a failed attempt is retried (default 2; 0 disables retries).
func WithMaxRetries(n int) Option {
	return func(c *Client) {
		if n >= 0 {
			c.retry.maxRetries = n
		}
	}
}

// WithTimeout sets the time limit of each attempt (default 10 minutes; 0 means none). For streams it
// limits the wait for the response headers only.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) { c.timeout = d }
}

// WithRetryBackoff sets the backoff before the first retry (doubling each retry, with jitter)
// and its cap. Defaults: 500ms and 8s.
func WithRetryBackoff(initial, max time.Duration) Option {
	return func(c *Client) {
		c.retry.initialDelay, c.retry.maxDelay = initial, max
	}
}

// WithMaxRetryAfter sets the longest Retry-After the client waits for before retrying; a longer
// one is returned to the caller as the error (default 1 minute).
func WithMaxRetryAfter(d time.Duration) Option {
	return func(c *Client) { c.retry.maxRetryAfter = d }
}

// NewClient returns a client for the environment "production", "staging" or "development"
// ("" means production). An empty apiKey falls back to PLUTOS_API_KEY. Without WithBaseURL,
// PLUTOS_BASE_URL (when set) replaces the environment's URL.
//
// Configuration mistakes (no API key, unknown environment) are reported by every call.
func NewClient(apiKey, environment string, opts ...Option) *Client {
	c := &Client{
		apiKey:     apiKey,
		httpClient: &http.Client{},
		timeout:    DefaultTimeout,
		retry:      defaultRetryPolicy,
		userAgent:  fmt.Sprintf("plutos-ai-sdk-go/%s %s", Version, runtime.Version()),
	}
	for _, opt := range opts {
		opt(c)
	}
	c.applyTLS()
	if c.apiKey == "" {
		c.apiKey = os.Getenv("PLUTOS_API_KEY")
	}
	if c.apiKey == "" {
		c.configErr = errors.New("plutos: no API key: pass one to NewClient or set PLUTOS_API_KEY")
	}
	if environment == "" {
		environment = "production"
	}
	if c.baseURL == "" {
		c.baseURL = os.Getenv("PLUTOS_BASE_URL")
	}
	if c.baseURL == "" {
		base, ok := Environments[environment]
		if !ok && c.configErr == nil {
			c.configErr = fmt.Errorf("plutos: unknown environment %q (want production, staging or development)", environment)
		}
		c.baseURL = base
	}
	c.baseURL = strings.TrimRight(c.baseURL, "/")
	return c
}

// BaseURL returns the base URL requests go to.
func (c *Client) BaseURL() string { return c.baseURL }

// ProcessData processes one input with a model (POST /process).
func (c *Client) ProcessData(req ProcessRequest) (*ProcessResponse, error) {
	return c.ProcessDataWithContext(context.Background(), req)
}

// ProcessDataWithContext is ProcessData with a context.
func (c *Client) ProcessDataWithContext(ctx context.Context, req ProcessRequest) (*ProcessResponse, error) {
	return doJSON[ProcessResponse](ctx, c, http.MethodPost, "/process", nil, req)
}

// GetProcess retrieves a stored processing result (GET /process/{id}).
func (c *Client) GetProcess(id string) (*GetProcessResponse, error) {
	return c.GetProcessWithContext(context.Background(), id)
}

// GetProcessWithContext is GetProcess with a context.
func (c *Client) GetProcessWithContext(ctx context.Context, id string) (*GetProcessResponse, error) {
	return doJSON[GetProcessResponse](ctx, c, http.MethodGet, "/process/"+url.PathEscape(id), nil, nil)
}

// Batch processes up to 100 inputs (POST /batch); results come back in input order, and an item
// that failed carries Error while the others succeed.
func (c *Client) Batch(req BatchRequest) (*BatchResponse, error) {
	return c.BatchWithContext(context.Background(), req)
}

// BatchWithContext is Batch with a context.
func (c *Client) BatchWithContext(ctx context.Context, req BatchRequest) (*BatchResponse, error) {
	return doJSON[BatchResponse](ctx, c, http.MethodPost, "/batch", nil, req)
}

// ListModels lists the available models (GET /models).
func (c *Client) ListModels() (*ListModelsResponse, error) {
	return c.ListModelsWithContext(context.Background())
}

// ListModelsWithContext is ListModels with a context.
func (c *Client) ListModelsWithContext(ctx context.Context) (*ListModelsResponse, error) {
	return doJSON[ListModelsResponse](ctx, c, http.MethodGet, "/models", nil, nil)
}

// GetUsage reports usage and limits for a period (GET /usage).
func (c *Client) GetUsage(params UsageParams) (*UsageResponse, error) {
	return c.GetUsageWithContext(context.Background(), params)
}

// GetUsageWithContext is GetUsage with a context.
func (c *Client) GetUsageWithContext(ctx context.Context, params UsageParams) (*UsageResponse, error) {
	q := url.Values{}
	if params.StartDate != "" {
		q.Set("start_date", params.StartDate)
	}
	if params.EndDate != "" {
		q.Set("end_date", params.EndDate)
	}
	return doJSON[UsageResponse](ctx, c, http.MethodGet, "/usage", q, nil)
}

// CreateWebhook registers a webhook (POST /webhooks).
func (c *Client) CreateWebhook(req CreateWebhookRequest) (*CreateWebhookResponse, error) {
	return c.CreateWebhookWithContext(context.Background(), req)
}

// CreateWebhookWithContext is CreateWebhook with a context.
func (c *Client) CreateWebhookWithContext(ctx context.Context, req CreateWebhookRequest) (*CreateWebhookResponse, error) {
	return doJSON[CreateWebhookResponse](ctx, c, http.MethodPost, "/webhooks", nil, req)
}

// ListWebhooks lists the caller's webhooks (GET /webhooks).
func (c *Client) ListWebhooks() (*ListWebhooksResponse, error) {
	return c.ListWebhooksWithContext(context.Background())
}

// ListWebhooksWithContext is ListWebhooks with a context.
func (c *Client) ListWebhooksWithContext(ctx context.Context) (*ListWebhooksResponse, error) {
	return doJSON[ListWebhooksResponse](ctx, c, http.MethodGet, "/webhooks", nil, nil)
}

// DeleteWebhook removes a webhook (DELETE /webhooks/{id}).
func (c *Client) DeleteWebhook(id string) (*DeleteWebhookResponse, error) {
	return c.DeleteWebhookWithContext(context.Background(), id)
}

// DeleteWebhookWithContext is DeleteWebhook with a context.
func (c *Client) DeleteWebhookWithContext(ctx context.Context, id string) (*DeleteWebhookResponse, error) {
	return doJSON[DeleteWebhookResponse](ctx, c, http.MethodDelete, "/webhooks/"+url.PathEscape(id), nil, nil)
}

// doJSON sends a request (with retries) and decodes the JSON answer.
func doJSON[T any](ctx context.Context, c *Client, method, path string, query url.Values, in any) (*T, error) {
	resp, body, err := c.send(ctx, method, path, query, in, false)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if c.responseInto != nil {
		*c.responseInto = resp
	}
	var out T
	if len(bytes.TrimSpace(body)) == 0 {
		return &out, nil
	}
	// Every result type embeds ResponseMeta: its RequestID is the response's X-Request-Id.
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("plutos: invalid JSON in response (HTTP %d): %w", resp.StatusCode, err)
	}
	if meta, ok := any(&out).(requestIDSetter); ok {
		meta.setRequestID(resp.Header.Get("X-Request-Id"))
	}
	return &out, nil
}

// send performs the request with retries. For non-streaming calls the body is read within the
// attempt (so a connection dropped mid-body is retried too) and returned; for streams the
// response is returned unread once its headers arrive, and the caller must close its body.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, in any, stream bool) (*http.Response, []byte, error) {
	if c.configErr != nil {
		return nil, nil, c.configErr
	}
	if ctx == nil {
		ctx = context.Background()
	}
	var payload []byte
	if in != nil {
		var err error
		if payload, err = json.Marshal(in); err != nil {
			return nil, nil, fmt.Errorf("plutos: encoding request: %w", err)
		}
	}
	target := c.baseURL + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	// Every POST carries an idempotency key, the same on each retry, so a retried call runs once.
	idempotencyKey := ""
	if method == http.MethodPost {
		idempotencyKey, _ = ctx.Value(idempotencyKeyCtx{}).(string)
		if idempotencyKey == "" {
			idempotencyKey = newIdempotencyKey()
		}
	}

	for attempt := 0; ; attempt++ {
		resp, body, err := c.attempt(ctx, method, target, payload, stream, idempotencyKey)
		if err == nil {
			return resp, body, nil
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		delay, retry := c.retry.delay(err, attempt)
		if !retry {
			return nil, nil, err
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, nil, ctx.Err()
		case <-timer.C:
		}
	}
}

func (c *Client) attempt(ctx context.Context, method, target string, payload []byte, stream bool, idempotencyKey string) (*http.Response, []byte, error) {
	attemptCtx, cancel := context.WithCancelCause(ctx)
	var timer *time.Timer
	if c.timeout > 0 {
		timer = time.AfterFunc(c.timeout, func() { cancel(errAttemptTimeout) })
	}
	// stopTimer reports false when the timeout already fired.
	stopTimer := func() bool { return timer == nil || timer.Stop() }

	var bodyReader io.Reader
	if payload != nil {
		bodyReader = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(attemptCtx, method, target, bodyReader)
	if err != nil {
		stopTimer()
		cancel(nil)
		return nil, nil, fmt.Errorf("plutos: building request: %w", err)
	}
	for name, values := range c.headers {
		req.Header[name] = append([]string(nil), values...)
	}
	req.Header.Set("Authorization", "Bearer "+c.apiKey)
	req.Header.Set("User-Agent", c.userAgent)
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if stream {
		req.Header.Set("Accept", "text/event-stream")
	} else {
		req.Header.Set("Accept", "application/json")
	}

	resp, err := c.httpClient.Do(req)
	if err != nil {
		stopped := stopTimer()
		cancel(nil)
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, &ConnectionError{Err: err, timeout: !stopped}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 && stream {
		if !stopTimer() {
			resp.Body.Close()
			cancel(nil)
			return nil, nil, &ConnectionError{Err: errAttemptTimeout, timeout: true}
		}
		// The attempt's context must live as long as the body: release it when the body closes.
		resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: func() { cancel(nil) }}
		return resp, nil, nil
	}
	body, readErr := io.ReadAll(resp.Body)
	resp.Body.Close()
	stopped := stopTimer()
	cancel(nil)
	if readErr != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, &ConnectionError{Err: readErr, timeout: !stopped}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return resp, body, nil
	}
	return nil, nil, newAPIError(resp.StatusCode, resp.Header, body)
}

var errAttemptTimeout = errors.New("attempt timed out")

type cancelOnClose struct {
	io.ReadCloser
	cancel func()
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

type idempotencyKeyCtx struct{}

// WithIdempotencyKey returns a context whose POST requests send key as their Idempotency-Key
// (by default each POST gets a fresh random key, reused across its retries). Repeating a call
// with the same key replays the first answer instead of running the request again.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idempotencyKeyCtx{}, key)
}

func newIdempotencyKey() string {
	var b [16]byte
	_, _ = cryptorand.Read(b[:])
	return "plutos-go-retry-" + hex.EncodeToString(b[:])
}
