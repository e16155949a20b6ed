package plutos_test

// The management methods against a running server; skipped unless PLUTOS_TEST_BASE_URL and
// PLUTOS_TEST_ADMIN_KEY (a key with the admin scope: `plutos keys create --admin`) are set.

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	plutos "github.com/plutos-ai/go-sdk"
)

func TestLiveManagement(t *testing.T) {
	baseURL, adminKey := os.Getenv("PLUTOS_TEST_BASE_URL"), os.Getenv("PLUTOS_TEST_ADMIN_KEY")
	if baseURL == "" || adminKey == "" {
		t.Skip("set PLUTOS_TEST_BASE_URL and PLUTOS_TEST_ADMIN_KEY to run")
	}
	ctx := context.Background()
	client := func(key string) *plutos.Client {
		return plutos.NewClient(key, "development", plutos.WithBaseURL(baseURL), plutos.WithTimeout(time.Minute))
	}
	admin := client(adminKey)
	account, err := admin.CreateAccount(ctx, "sdk-go", "free")
	if err != nil || account.Plan != "free" || account.Suspended || account.RequestID == "" {
		t.Fatalf("CreateAccount: %+v, %v", account, err)
	}
	owner, err := admin.CreateKey(ctx, plutos.CreateKeyRequest{
		AccountID: account.ID, Name: "owner",
		Scopes: []string{"process", "batch", "stream", "models", "usage", "webhooks", "keys"},
	})
	if err != nil || owner.Key.AccountID != account.ID {
		t.Fatalf("CreateKey for the account: %+v, %v", owner, err)
	}

	self := client(owner.Secret)
	five := 5
	child, err := self.CreateKey(ctx, plutos.CreateKeyRequest{Name: "child", Scopes: []string{"models"}, Limits: &plutos.KeyLimits{RequestsPerMinute: &five}})
	if err != nil || child.Key.Limits == nil || *child.Key.Limits.RequestsPerMinute != 5 {
		t.Fatalf("CreateKey: %+v, %v", child, err)
	}
	if keys, err := self.ListKeys(ctx, ""); err != nil || len(keys.Keys) != 2 {
		t.Fatalf("ListKeys: %+v, %v", keys, err)
	}
	grace := 60
	rotated, err := self.RotateKey(ctx, "", child.Key.ID, &grace)
	if err != nil || rotated.Replaced.ReplacedBy != rotated.Key.ID || rotated.Replaced.Status != "rotated" {
		t.Fatalf("RotateKey: %+v, %v", rotated, err)
	}
	if _, err := self.RotateKey(ctx, "", child.Key.ID, nil); !plutos.IsConflict(err) {
		t.Fatalf("rotating a rotated key: %v", err)
	}
	if k, err := self.RevokeKey(ctx, "", rotated.Key.ID, false); err != nil || k.Status != "revoked" {
		t.Fatalf("RevokeKey: %+v, %v", k, err)
	}
	if _, err := self.RevokeKey(ctx, "", owner.Key.ID, false); !plutos.IsInvalidParameters(err) {
		t.Fatalf("revoking itself without allowSelf: %v", err)
	}
	if _, err := self.GetKey(ctx, "", "key_0000000000000000"); !plutos.IsNotFound(err) {
		t.Fatalf("GetKey of a missing key: %v", err)
	}
	if _, err := self.ListAccounts(ctx, plutos.PageParams{}); !plutos.IsPermissionDenied(err) {
		t.Fatalf("ListAccounts without admin: %v", err)
	}
	if page, err := self.ListProcesses(ctx, plutos.ListProcessesParams{PageParams: plutos.PageParams{Limit: 5}}); err != nil || len(page.Data) != 0 || page.HasMore {
		t.Fatalf("ListProcesses: %+v, %v", page, err)
	}
	if daily, err := self.GetDailyUsage(ctx, plutos.DailyUsageParams{}); err != nil || len(daily.Data) != 0 {
		t.Fatalf("GetDailyUsage: %+v, %v", daily, err)
	}
	hook, err := self.CreateWebhook(plutos.CreateWebhookRequest{URL: "http://127.0.0.1:9/sdk-go", Events: []string{"processing.completed"}})
	if err != nil {
		t.Fatal(err)
	}
	if !hook.HasSecret || !strings.HasPrefix(hook.Secret, "whsec_") || hook.RequestID == "" {
		t.Fatalf("CreateWebhook without a secret: %+v", hook) // the server generates one, shown once
	}
	if ping, err := self.TestWebhook(ctx, hook.ID); err != nil || ping.Delivered || ping.Error == nil {
		t.Fatalf("TestWebhook: %+v, %v", ping, err)
	}
	if d, err := self.ListWebhookDeliveries(ctx, hook.ID, plutos.PageParams{}, ""); err != nil || len(d.Data) != 0 {
		t.Fatalf("ListWebhookDeliveries: %+v, %v", d, err)
	}
	if _, err := self.RedeliverWebhookDelivery(ctx, hook.ID, "msg_0000000000000000"); !plutos.IsNotFound(err) {
		t.Fatalf("RedeliverWebhookDelivery of a missing delivery: %v", err)
	}
	if _, err := self.DeleteWebhook(hook.ID); err != nil {
		t.Fatal(err)
	}

	yes, no := true, false
	if a, err := admin.UpdateAccount(ctx, account.ID, plutos.UpdateAccountRequest{Suspended: &yes}); err != nil || !a.Suspended {
		t.Fatalf("UpdateAccount: %+v, %v", a, err)
	}
	if _, err := self.ListKeys(ctx, ""); !plutos.IsAccountSuspended(err) {
		t.Fatalf("a suspended account's key: %v", err)
	}
	if _, err := admin.UpdateAccount(ctx, account.ID, plutos.UpdateAccountRequest{Suspended: &no}); err != nil {
		t.Fatal(err)
	}
	audit, err := admin.ListAuditEvents(ctx, plutos.PageParams{Limit: 100}, account.ID)
	if err != nil || len(audit.Data) == 0 || audit.Data[len(audit.Data)-1].Action != "account.created" {
		t.Fatalf("ListAuditEvents: %+v, %v", audit, err)
	}
}
