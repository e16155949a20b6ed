package grpcclient

// The management services over gRPC against a running server; skipped unless
// PLUTOS_TEST_GRPC_TARGET, PLUTOS_TEST_ADMIN_KEY (a key with the admin scope) and
// PLUTOS_TEST_MODEL are set.

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	plutos "github.com/plutos-ai/go-sdk"
	plutosv1 "github.com/plutos-ai/go-sdk/gen/plutos/v1"
)

func adminClient(t *testing.T) *Client {
	t.Helper()
	admin := os.Getenv("PLUTOS_TEST_ADMIN_KEY")
	if admin == "" {
		t.Skip("set PLUTOS_TEST_ADMIN_KEY (and PLUTOS_TEST_GRPC_TARGET) to run live management tests")
	}
	c, _ := liveClient(t, admin)
	return c
}

func TestLiveGRPCManagement(t *testing.T) {
	admin := adminClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Accounts (admin).
	var trailer metadata.MD
	created, err := admin.Admin.CreateAccount(ctx, &plutosv1.CreateAccountRequest{Name: "sdk-go-grpc", Plan: "free"}, grpc.Trailer(&trailer))
	if err != nil {
		t.Fatal(err)
	}
	account := created.GetAccount()
	if account.GetPlan() != "free" || account.GetSuspended() {
		t.Fatalf("%v", account)
	}
	if ids := trailer.Get("x-request-id"); len(ids) != 1 || !strings.HasPrefix(ids[0], "req_") {
		t.Errorf("request id trailer %v", trailer)
	}
	got, err := admin.Admin.GetAccount(ctx, &plutosv1.GetAccountRequest{Id: account.GetId()})
	if err != nil || got.GetAccount().GetId() != account.GetId() {
		t.Fatalf("%v %v", got, err)
	}
	limit := int32(100)
	accounts, err := admin.Admin.ListAccounts(ctx, &plutosv1.ListAccountsRequest{Limit: &limit})
	if err != nil || len(accounts.GetData()) == 0 {
		t.Fatalf("%v %v", accounts, err)
	}
	zero := int32(0)
	_, err = admin.Admin.ListAccounts(ctx, &plutosv1.ListAccountsRequest{Limit: &zero})
	if apiErr := AsAPIError(err); !plutos.IsInvalidParameters(apiErr) || apiErr.Details["field"] != "limit" {
		t.Fatalf("limit 0: %+v", apiErr)
	}

	// Keys: the operator gives the account a key that may manage keys; that key manages its own.
	owner, err := admin.Keys.CreateKey(ctx, &plutosv1.CreateKeyRequest{
		AccountId: account.GetId(), Name: "owner", Scopes: []string{"process", "usage", "webhooks", "keys"},
	})
	if err != nil || !strings.HasPrefix(owner.GetSecret(), "pk_") {
		t.Fatalf("%v %v", owner, err)
	}
	user, _ := liveClient(t, owner.GetSecret())
	child, err := user.Keys.CreateKey(ctx, &plutosv1.CreateKeyRequest{Name: "child", Scopes: []string{"usage"}})
	if err != nil {
		t.Fatal(err)
	}
	if child.GetKey().GetLastUsedAt() != nil {
		t.Errorf("a new key has a last use: %v", child.GetKey())
	}
	keys, err := user.Keys.ListKeys(ctx, &plutosv1.ListKeysRequest{})
	if err != nil || len(keys.GetKeys()) != 2 {
		t.Fatalf("%v %v", keys, err)
	}
	renamed, err := user.Keys.UpdateKey(ctx, &plutosv1.UpdateKeyRequest{
		Id: child.GetKey().GetId(), Name: ptr("renamed"), UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}},
	})
	if err != nil || renamed.GetKey().GetName() != "renamed" {
		t.Fatalf("%v %v", renamed, err)
	}
	fetched, err := user.Keys.GetKey(ctx, &plutosv1.GetKeyRequest{Id: child.GetKey().GetId()})
	if err != nil || fetched.GetKey().GetName() != "renamed" {
		t.Fatalf("%v %v", fetched, err)
	}
	grace := int32(60)
	rotated, err := user.Keys.RotateKey(ctx, &plutosv1.RotateKeyRequest{Id: child.GetKey().GetId(), GraceSeconds: &grace})
	if err != nil || rotated.GetReplaced().GetReplacedBy() != rotated.GetKey().GetId() {
		t.Fatalf("%v %v", rotated, err)
	}
	_, err = user.Keys.RotateKey(ctx, &plutosv1.RotateKeyRequest{Id: child.GetKey().GetId()})
	if apiErr := AsAPIError(err); apiErr == nil || apiErr.Code != plutos.CodeConflict {
		t.Fatalf("second rotation: %+v", apiErr)
	}
	revoked, err := user.Keys.RevokeKey(ctx, &plutosv1.RevokeKeyRequest{Id: rotated.GetKey().GetId()})
	if err != nil || revoked.GetKey().GetStatus() != "revoked" {
		t.Fatalf("%v %v", revoked, err)
	}
	_, err = user.Keys.GetKey(ctx, &plutosv1.GetKeyRequest{Id: "key_0000000000000000"})
	if !plutos.IsNotFound(AsAPIError(err)) {
		t.Fatalf("unknown key: %v", err)
	}
	_, err = user.Admin.ListAccounts(ctx, &plutosv1.ListAccountsRequest{})
	if !plutos.IsPermissionDenied(AsAPIError(err)) {
		t.Fatalf("admin without the scope: %v", err)
	}

	// History, daily usage, webhook deliveries.
	one := int32(1)
	history, err := user.Processing.ListProcesses(ctx, &plutosv1.ListProcessesRequest{Limit: &one})
	if err != nil || len(history.GetData()) != 0 || history.GetHasMore() {
		t.Fatalf("%v %v", history, err)
	}
	daily, err := user.Usage.GetDailyUsage(ctx, &plutosv1.GetDailyUsageRequest{})
	if err != nil || len(daily.GetData()) != 0 {
		t.Fatalf("%v %v", daily, err)
	}
	hook, err := user.Webhooks.CreateWebhook(ctx, &plutosv1.CreateWebhookRequest{
		Url: "http://127.0.0.1:9/sdk-go-grpc", Events: []string{"processing.completed"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ping, err := user.Webhooks.TestWebhook(ctx, &plutosv1.TestWebhookRequest{Id: hook.GetId()})
	if err != nil || ping.GetDelivered() || ping.GetDeliveryId() == "" {
		t.Fatalf("%v %v", ping, err)
	}
	deliveries, err := user.Webhooks.ListWebhookDeliveries(ctx, &plutosv1.ListWebhookDeliveriesRequest{WebhookId: hook.GetId()})
	if err != nil || len(deliveries.GetData()) != 0 {
		t.Fatalf("%v %v", deliveries, err)
	}
	_, err = user.Webhooks.RedeliverWebhookDelivery(ctx, &plutosv1.RedeliverWebhookDeliveryRequest{
		WebhookId: hook.GetId(), Id: "msg_0000000000000000",
	})
	if !plutos.IsNotFound(AsAPIError(err)) {
		t.Fatalf("unknown delivery: %v", err)
	}
	if _, err := user.Webhooks.DeleteWebhook(ctx, &plutosv1.DeleteWebhookRequest{Id: hook.GetId()}); err != nil {
		t.Fatal(err)
	}

	// Suspension, then the audit trail of it all.
	suspend := true
	if _, err := admin.Admin.UpdateAccount(ctx, &plutosv1.UpdateAccountRequest{Id: account.GetId(), Suspended: &suspend}); err != nil {
		t.Fatal(err)
	}
	_, err = user.Keys.ListKeys(ctx, &plutosv1.ListKeysRequest{})
	if apiErr := AsAPIError(err); apiErr == nil || apiErr.Code != plutos.CodeAccountSuspended {
		t.Fatalf("suspended: %+v", apiErr)
	}
	audit, err := admin.Admin.ListAuditEvents(ctx, &plutosv1.ListAuditEventsRequest{AccountId: account.GetId(), Limit: &limit})
	if err != nil {
		t.Fatal(err)
	}
	events := audit.GetData()
	if len(events) == 0 || events[0].GetAction() != "account.updated" || events[len(events)-1].GetAction() != "account.created" {
		t.Fatalf("%v", events)
	}
}

func ptr[T any](v T) *T { return &v }
