package plutos

import (
	"reflect"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	plutosv1 "github.com/plutos-ai/go-sdk/gen/plutos/v1"
)

// The REST types are written by hand (so the reference's Go example compiles with plain values);
// this keeps their JSON field names in step with the protos, the one source of truth.

func jsonNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct {
			names = append(names, jsonNames(f.Type)...) // embedded: its fields are promoted
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

func protoNames(m proto.Message) []string {
	var names []string
	fields := m.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		names = append(names, fields.Get(i).JSONName())
	}
	sort.Strings(names)
	return names
}

func TestRESTTypesMatchTheProtos(t *testing.T) {
	pairs := []struct {
		rest  any
		proto proto.Message
	}{
		{processOptionsJSON{}, &plutosv1.ProcessOptions{}},
		{Usage{}, &plutosv1.Usage{}},
		{ProcessRequest{}, &plutosv1.ProcessRequest{}},
		{ProcessResponse{}, &plutosv1.ProcessResponse{}},
		{GetProcessResponse{}, &plutosv1.GetProcessResponse{}},
		{BatchRequest{}, &plutosv1.BatchRequest{}},
		{BatchItemError{}, &plutosv1.BatchItemError{}},
		{BatchResult{}, &plutosv1.BatchResult{}},
		{BatchResponse{}, &plutosv1.BatchResponse{}},
		{Pricing{}, &plutosv1.Pricing{}},
		{Model{}, &plutosv1.Model{}},
		{ListModelsResponse{}, &plutosv1.ListModelsResponse{}},
		{UsagePeriod{}, &plutosv1.UsagePeriod{}},
		{UsageTotals{}, &plutosv1.UsageTotals{}},
		{UsageLimits{}, &plutosv1.UsageLimits{}},
		{UsageResponse{}, &plutosv1.GetUsageResponse{}},
		{CreateWebhookRequest{}, &plutosv1.CreateWebhookRequest{}},
		{CreateWebhookResponse{}, &plutosv1.CreateWebhookResponse{}},
		{Webhook{}, &plutosv1.Webhook{}},
		{ListWebhooksResponse{}, &plutosv1.ListWebhooksResponse{}},
		{DeleteWebhookResponse{}, &plutosv1.DeleteWebhookResponse{}},
		{KeyLimits{}, &plutosv1.KeyLimits{}},
		{APIKey{}, &plutosv1.ApiKey{}},
		{CreateKeyResponse{}, &plutosv1.CreateKeyResponse{}},
		{ListKeysResponse{}, &plutosv1.ListKeysResponse{}},
		{RotateKeyResponse{}, &plutosv1.RotateKeyResponse{}},
		{ProcessHistoryItem{}, &plutosv1.ProcessRecord{}},
		{ListProcessesResponse{}, &plutosv1.ListProcessesResponse{}},
		{DailyUsage{}, &plutosv1.DailyUsage{}},
		{DailyUsageResponse{}, &plutosv1.GetDailyUsageResponse{}},
		{WebhookDelivery{}, &plutosv1.WebhookDelivery{}},
		{ListWebhookDeliveriesResponse{}, &plutosv1.ListWebhookDeliveriesResponse{}},
		{TestWebhookResponse{}, &plutosv1.TestWebhookResponse{}},
		{AccountUsage{}, &plutosv1.AccountUsage{}},
		{Account{}, &plutosv1.Account{}},
		{ListAccountsResponse{}, &plutosv1.ListAccountsResponse{}},
		{AuditEvent{}, &plutosv1.AuditEvent{}},
		{ListAuditEventsResponse{}, &plutosv1.ListAuditEventsResponse{}},
	}
	for _, p := range pairs {
		got, want := jsonNames(reflect.TypeOf(p.rest)), protoNames(p.proto)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%T: fields %v, proto %s has %v", p.rest, got, p.proto.ProtoReflect().Descriptor().FullName(), want)
		}
	}

	// A stream event is the union of StreamChunk and StreamComplete.
	union := map[string]bool{}
	for _, m := range []proto.Message{&plutosv1.StreamChunk{}, &plutosv1.StreamComplete{}} {
		for _, n := range protoNames(m) {
			union[n] = true
		}
	}
	var want []string
	for n := range union {
		want = append(want, n)
	}
	sort.Strings(want)
	if got := jsonNames(reflect.TypeOf(StreamEvent{})); !reflect.DeepEqual(got, want) {
		t.Errorf("StreamEvent: fields %v, protos have %v", got, want)
	}
}

func TestUsageQueryParametersMatchTheProto(t *testing.T) {
	fields := (&plutosv1.GetUsageRequest{}).ProtoReflect().Descriptor().Fields()
	var got []string
	for i := range fields.Len() {
		got = append(got, string(fields.Get(i).Name()))
	}
	if want := []string{"start_date", "end_date"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("GetUsageRequest fields %v; GetUsage sends %v", got, want)
	}
}
