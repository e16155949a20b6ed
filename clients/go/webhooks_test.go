package plutos

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

const (
	webhookBody  = `{"event":"processing.completed","timestamp":"2026-11-30T12:00:00Z","data":{"id":"proc_0123456789abcdef"}}`
	webhookWhsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	webhookTS    = 1764504000
	// Computed by clients/python's plutos_ai.webhooks.sign.
	sigWhsec = "v1,j5OEjJNB2uv/EoTm3UOPNH7Bk9V4YHbq4U3Zu6ox9a8="
	sigPlain = "v1,w87jIuLZsif2n8C7w3adOYifGnKRV1yQQ/t/NjLtCxE="
)

func webhookHeader(signature string, timestamp string) http.Header {
	h := http.Header{}
	h.Set("Webhook-Id", "msg_2Lq")
	h.Set("Webhook-Timestamp", timestamp)
	if signature != "" {
		h.Set("Webhook-Signature", signature)
	}
	return h
}

func TestSignWebhookMatchesPythonSDK(t *testing.T) {
	for secret, want := range map[string]string{webhookWhsec: sigWhsec, "plain-secret": sigPlain} {
		got, err := SignWebhook([]byte(webhookBody), "msg_2Lq", webhookTS, secret)
		if err != nil || got != want {
			t.Fatalf("SignWebhook(%q) = %q, %v; want %q", secret, got, err, want)
		}
	}
}

func TestVerifyWebhook(t *testing.T) {
	now := time.Unix(webhookTS+10, 0)
	if err := VerifyWebhook([]byte(webhookBody), webhookHeader("v1,bogus "+sigWhsec, "1764504000"), webhookWhsec, 0, now); err != nil {
		t.Fatalf("valid delivery refused: %v", err)
	}
	cases := []struct {
		body, signature, timestamp, want string
	}{
		{strings.Replace(webhookBody, "proc_", "proc-", 1), sigWhsec, "1764504000", "no matching webhook signature"},
		{webhookBody, sigWhsec, "1764503000", "webhook timestamp too old"},
		{webhookBody, sigWhsec, "1764505000", "webhook timestamp too new"},
		{webhookBody, "", "1764504000", "missing webhook-signature header"},
		{webhookBody, sigWhsec, "soon", "invalid webhook-timestamp header"},
	}
	for _, c := range cases {
		err := VerifyWebhook([]byte(c.body), webhookHeader(c.signature, c.timestamp), webhookWhsec, 0, now)
		if !errors.Is(err, ErrWebhookVerification) || !strings.HasSuffix(err.Error(), c.want) {
			t.Errorf("%s: got %v", c.want, err)
		}
	}
}
