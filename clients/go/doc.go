// Package plutos is the Go client for the PlutosAI REST API.
//
//	client := plutos.NewClient("your-api-key", "production")
//	result, err := client.ProcessData(plutos.ProcessRequest{
//		Input:   "What is the capital of France?",
//		Model:   "gpt-4",
//		Options: plutos.ProcessOptions{Temperature: 0.7, MaxTokens: 100},
//	})
//
// Every call has a variant taking a context.Context first (ProcessDataWithContext, ...).
//
// # Configuration
//
// The environment ("production", "staging", "development") picks the base URL. WithBaseURL
// overrides it; without WithBaseURL the PLUTOS_BASE_URL environment variable, when set, does.
// An empty API key falls back to PLUTOS_API_KEY.
//
// # Errors
//
// A call fails with one of:
//
//   - *APIError: the API answered with an error envelope (or an SSE "error" event). It carries
//     Code (e.g. "rate_limit_exceeded", see the Code* constants), Status (HTTP), Message,
//     Details, RequestID and RetryAfter. Helpers: IsRateLimit, IsInsufficientQuota,
//     IsAuthentication, IsPermissionDenied, IsNotFound, IsInvalidParameters, IsInvalidModel,
//     IsInputTooLong, IsServerError, IsRetryable.
//   - *ConnectionError: no usable response (refused, reset, timeout, broken stream); Timeout()
//     tells a client-side timeout apart.
//   - the context's error, when the context is cancelled or its deadline passes.
//
// # Retries
//
// Failed attempts are retried (2 retries by default, WithMaxRetries) with exponential backoff
// and jitter when the status is 429 (except insufficient_quota), 502, 503 or 504, or on a
// connection error. A Retry-After header (or details.retryAfter) sets the wait instead; one
// longer than a minute is returned to the caller rather than waited for. Other 4xx and 500 are
// never retried. A stream is retried only until its response headers arrive.
//
// gRPC stubs generated from the protos are in the gen/plutos/v1 package; the grpcclient
// package dials them with the API key attached.
package plutos
