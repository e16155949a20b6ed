package plutos

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The reference's error codes.
const (
	CodeInvalidAPIKey      = "invalid_api_key"
	CodePermissionDenied   = "permission_denied"
	CodeNotFound           = "not_found"
	CodeInvalidParameters  = "invalid_parameters"
	CodeInvalidModel       = "invalid_model"
	CodeInputTooLong       = "input_too_long"
	CodeRateLimitExceeded  = "rate_limit_exceeded"
	CodeInsufficientQuota  = "insufficient_quota"
	CodeInternalError      = "internal_error"
	CodeUpstreamError      = "upstream_error"
	CodeServiceUnavailable = "service_unavailable"
	CodeTimeout            = "timeout"

	// Beyond the reference: codes this server also uses.
	CodeMethodNotAllowed = "method_not_allowed"
	CodeNotImplemented   = "not_implemented"
	CodeCancelled        = "cancelled"
	// The operator suspended the key's account (403).
	CodeAccountSuspended = "account_suspended"
	// The resource's state forbids the call, e.g. rotating a key that is not active (409).
	CodeConflict = "conflict"
	// An Idempotency-Key sent again with a different request (422).
	CodeIdempotencyKeyReused = "idempotency_key_reused"
	// The first request with this Idempotency-Key is still running (409, with Retry-After).
	CodeIdempotencyInProgress = "idempotency_in_progress"
)

// CodeStatus is the HTTP status of each error code; errors inside a stream take theirs from it.
var CodeStatus = map[string]int{
	CodeInvalidAPIKey:         http.StatusUnauthorized,
	CodePermissionDenied:      http.StatusForbidden,
	CodeNotFound:              http.StatusNotFound,
	CodeInvalidParameters:     http.StatusBadRequest,
	CodeInvalidModel:          http.StatusBadRequest,
	CodeInputTooLong:          http.StatusBadRequest,
	CodeRateLimitExceeded:     http.StatusTooManyRequests,
	CodeInsufficientQuota:     http.StatusTooManyRequests,
	CodeInternalError:         http.StatusInternalServerError,
	CodeUpstreamError:         http.StatusBadGateway,
	CodeServiceUnavailable:    http.StatusServiceUnavailable,
	CodeTimeout:               http.StatusGatewayTimeout,
	CodeMethodNotAllowed:      http.StatusMethodNotAllowed,
	CodeNotImplemented:        http.StatusNotImplemented,
	CodeCancelled:             499, // client closed request
	CodeAccountSuspended:      http.StatusForbidden,
	CodeConflict:              http.StatusConflict,
	CodeIdempotencyKeyReused:  http.StatusUnprocessableEntity,
	CodeIdempotencyInProgress: http.StatusConflict,
}

// APIError is an error answered by the API: {"error": {"code", "message", "details", "requestId"}}.
type APIError struct {
	// Status is the HTTP status (for an error inside a stream: the status of its code).
	Status int
	// Code is the reference's error code, e.g. CodeRateLimitExceeded; "http_<status>" when the
	// body had none.
	Code    string
	Message string
	// Details is the envelope's details object (nil when absent).
	Details map[string]any
	// RequestID is the envelope's requestId, else the X-Request-Id header.
	RequestID string
	// RetryAfter is the wait the server asked for (Retry-After header or details.retryAfter); 0 if none.
	RetryAfter time.Duration
	// Header holds the response headers (nil for errors inside a stream).
	Header http.Header
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "plutos: %s (HTTP %d)", e.Code, e.Status)
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " [request %s]", e.RequestID)
	}
	return b.String()
}

// ConnectionError means no usable response arrived: the connection was refused or broken, an
// attempt timed out, or a stream ended early.
type ConnectionError struct {
	Err       error
	timeout   bool
	RequestID string
}

func (e *ConnectionError) Error() string {
	if e.timeout {
		return "plutos: request timed out: " + e.Err.Error()
	}
	return "plutos: connection error: " + e.Err.Error()
}

func (e *ConnectionError) Unwrap() error { return e.Err }

// Timeout reports whether an attempt ran past the client's timeout.
func (e *ConnectionError) Timeout() bool { return e.timeout }

func asAPIError(err error) (*APIError, bool) {
	var apiErr *APIError
	ok := errors.As(err, &apiErr)
	return apiErr, ok
}

func hasCode(err error, code string) bool {
	e, ok := asAPIError(err)
	return ok && e.Code == code
}

// IsRateLimit reports a 429 rate_limit_exceeded (see APIError.RetryAfter).
func IsRateLimit(err error) bool {
	e, ok := asAPIError(err)
	return ok && e.Status == http.StatusTooManyRequests && e.Code != CodeInsufficientQuota
}

// IsInsufficientQuota reports a 429 insufficient_quota, which is never retried.
func IsInsufficientQuota(err error) bool { return hasCode(err, CodeInsufficientQuota) }

// IsAuthentication reports a 401 (invalid_api_key).
func IsAuthentication(err error) bool {
	e, ok := asAPIError(err)
	return ok && e.Status == http.StatusUnauthorized
}

// IsPermissionDenied reports a 403 (permission_denied).
func IsPermissionDenied(err error) bool {
	e, ok := asAPIError(err)
	return ok && e.Status == http.StatusForbidden
}

// IsNotFound reports a 404 (not_found).
func IsNotFound(err error) bool {
	e, ok := asAPIError(err)
	return ok && e.Status == http.StatusNotFound
}

// IsAccountSuspended reports a 403 account_suspended.
func IsAccountSuspended(err error) bool { return hasCode(err, CodeAccountSuspended) }

// IsConflict reports a 409 conflict (e.g. rotating a key that is not active).
func IsConflict(err error) bool { return hasCode(err, CodeConflict) }

// IsInvalidParameters reports a 400 invalid_parameters.
func IsInvalidParameters(err error) bool { return hasCode(err, CodeInvalidParameters) }

// IsInvalidModel reports a 400 invalid_model.
func IsInvalidModel(err error) bool { return hasCode(err, CodeInvalidModel) }

// IsInputTooLong reports a 400 input_too_long.
func IsInputTooLong(err error) bool { return hasCode(err, CodeInputTooLong) }

// IsServerError reports a 5xx answer.
func IsServerError(err error) bool {
	e, ok := asAPIError(err)
	return ok && e.Status >= 500
}

// IsRetryable reports whether the SDK retries this failure: connection errors and the codes the
// server's table (ErrorTable) marks retryable; for unknown codes, 429, 502, 503 and 504.
func IsRetryable(err error) bool {
	var connErr *ConnectionError
	if errors.As(err, &connErr) {
		return true
	}
	e, ok := asAPIError(err)
	if !ok {
		return false
	}
	if kind, known := ErrorTable[e.Code]; known {
		return kind.Retryable
	}
	switch e.Status {
	case http.StatusTooManyRequests:
		return e.Code != CodeInsufficientQuota
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

type errorEnvelope struct {
	Error *errorBody `json:"error"`
}

type errorBody struct {
	Code      string         `json:"code"`
	Message   string         `json:"message"`
	Details   map[string]any `json:"details"`
	RequestID string         `json:"requestId"`
}

// parseRetryAfter reads a Retry-After header: delay-seconds (fractions accepted) or an HTTP date.
func parseRetryAfter(value string, now time.Time) (time.Duration, bool) {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0, false
	}
	if secs, err := strconv.ParseFloat(value, 64); err == nil {
		if secs < 0 {
			secs = 0
		}
		return time.Duration(secs * float64(time.Second)), true
	}
	if t, err := http.ParseTime(value); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}

// newAPIError builds the error from a body and, for HTTP responses, the status and headers.
// status 0 means "take it from the code" (errors inside a stream).
func newAPIError(status int, header http.Header, body []byte) *APIError {
	var inner *errorBody
	var env errorEnvelope
	if err := json.Unmarshal(body, &env); err == nil && env.Error != nil {
		inner = env.Error
	} else {
		var bare errorBody
		if err := json.Unmarshal(body, &bare); err == nil && bare.Code != "" {
			inner = &bare
		}
	}
	e := &APIError{Status: status, Header: header}
	if inner != nil {
		e.Code, e.Message, e.Details, e.RequestID = inner.Code, inner.Message, inner.Details, inner.RequestID
	} else if text := strings.TrimSpace(string(body)); text != "" {
		if len(text) > 500 {
			text = text[:500]
		}
		e.Message = text
	}
	if e.Status == 0 {
		e.Status = CodeStatus[e.Code]
		if e.Status == 0 {
			e.Status = http.StatusInternalServerError
		}
	}
	if e.Code == "" {
		e.Code = "http_" + strconv.Itoa(e.Status)
	}
	if e.Message == "" {
		e.Message = http.StatusText(e.Status)
	}
	if e.RequestID == "" && header != nil {
		e.RequestID = header.Get("X-Request-Id")
	}
	if header != nil {
		if d, ok := parseRetryAfter(header.Get("Retry-After"), time.Now()); ok {
			e.RetryAfter = d
		}
	}
	if e.RetryAfter == 0 && e.Details != nil {
		if secs, ok := e.Details["retryAfter"].(float64); ok && secs > 0 {
			e.RetryAfter = time.Duration(secs * float64(time.Second))
		}
	}
	return e
}
