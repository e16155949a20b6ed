package plutos

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Webhook deliveries carry Standard Webhooks signatures: webhook-id, webhook-timestamp (Unix
// seconds) and webhook-signature (space-separated "v1,<base64 HMAC-SHA256>" of
// "<id>.<timestamp>.<body>"). The HMAC key is the webhook's secret: for a "whsec_"-prefixed secret
// the base64-decoded remainder, else its bytes. The same scheme as the Python SDK's webhooks.verify.

// DefaultWebhookTolerance is how far a delivery's timestamp may be from now.
const DefaultWebhookTolerance = 5 * time.Minute

// ErrWebhookVerification is wrapped by every error VerifyWebhook returns.
var ErrWebhookVerification = errors.New("webhook verification failed")

func webhookError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrWebhookVerification}, args...)...)
}

func webhookKey(secret string) ([]byte, error) {
	if secret == "" {
		return nil, webhookError("no webhook secret given")
	}
	if encoded, ok := strings.CutPrefix(secret, "whsec_"); ok {
		// Padding optional, as Standard Webhooks libraries read it.
		key, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(encoded, "="))
		if err != nil {
			return nil, webhookError("the whsec_ secret is not valid base64")
		}
		return key, nil
	}
	return []byte(secret), nil
}

// SignWebhook returns the webhook-signature header value (one "v1," signature) for a payload, for
// testing a receiver.
func SignWebhook(payload []byte, msgID string, timestamp int64, secret string) (string, error) {
	key, err := webhookKey(secret)
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%d.", msgID, timestamp)
	mac.Write(payload)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}

// VerifyWebhook checks a delivery's signature and timestamp (within tolerance of now; 0 means
// DefaultWebhookTolerance). payload is the raw body exactly as received; decode it with
// encoding/json once this returns nil. Errors wrap ErrWebhookVerification.
func VerifyWebhook(payload []byte, header http.Header, secret string, tolerance time.Duration, now time.Time) error {
	if tolerance == 0 {
		tolerance = DefaultWebhookTolerance
	}
	if now.IsZero() {
		now = time.Now()
	}
	msgID, rawTimestamp, signatures := header.Get("webhook-id"), header.Get("webhook-timestamp"), header.Get("webhook-signature")
	for name, value := range map[string]string{"webhook-id": msgID, "webhook-timestamp": rawTimestamp, "webhook-signature": signatures} {
		if value == "" {
			return webhookError("missing %s header", name)
		}
	}
	timestamp, err := strconv.ParseInt(strings.TrimSpace(rawTimestamp), 10, 64)
	if err != nil {
		return webhookError("invalid webhook-timestamp header")
	}
	sent := time.Unix(timestamp, 0)
	if sent.Before(now.Add(-tolerance)) {
		return webhookError("webhook timestamp too old")
	}
	if sent.After(now.Add(tolerance)) {
		return webhookError("webhook timestamp too new")
	}
	expected, err := SignWebhook(payload, msgID, timestamp, secret)
	if err != nil {
		return err
	}
	matched := false
	for _, candidate := range strings.Fields(signatures) {
		// Every v1 signature is compared in constant time, without stopping at the first match.
		if strings.HasPrefix(candidate, "v1,") && hmac.Equal([]byte(candidate), []byte(expected)) {
			matched = true
		}
	}
	if !matched {
		return webhookError("no matching webhook signature")
	}
	return nil
}
