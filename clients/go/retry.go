package plutos

import (
	"math/rand/v2"
	"time"
)

type retryPolicy struct {
	maxRetries    int
	initialDelay  time.Duration
	maxDelay      time.Duration
	maxRetryAfter time.Duration
}

var defaultRetryPolicy = retryPolicy{
	maxRetries:    DefaultMaxRetries,
	initialDelay:  500 * time.Millisecond,
	maxDelay:      8 * time.Second,
	maxRetryAfter: time.Minute,
}

// delay returns the wait before retry number `retry` (0-based) after err, and false when err
// must be returned: not retryable, out of retries, or a Retry-After longer than maxRetryAfter.
func (p retryPolicy) delay(err error, retry int) (time.Duration, bool) {
	if retry >= p.maxRetries || !IsRetryable(err) {
		return 0, false
	}
	if apiErr, ok := asAPIError(err); ok && apiErr.RetryAfter > 0 {
		if apiErr.RetryAfter > p.maxRetryAfter {
			return 0, false
		}
		return apiErr.RetryAfter, true
	}
	// Exponential backoff with "equal jitter": half fixed, half random.
	backoff := p.initialDelay << retry
	if backoff > p.maxDelay || backoff <= 0 {
		backoff = p.maxDelay
	}
	half := backoff / 2
	if half <= 0 {
		return backoff, true
	}
	return half + rand.N(half+1), true
}
