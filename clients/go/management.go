package plutos

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The management API: keys, accounts, the audit trail, request history, daily usage and webhook
// deliveries (docs/management-api.md). Key endpoints act on the caller's account; with a non-empty
// AccountID (an operator key, scope admin) on that account's keys.

// KeyLimits are per-key limits, each at most the plan's; nil: the plan's.
type KeyLimits struct {
	RequestsPerMinute  *int `json:"requestsPerMinute,omitempty"`
	RequestsPerHour    *int `json:"requestsPerHour,omitempty"`
	RequestsPerDay     *int `json:"requestsPerDay,omitempty"`
	ConcurrentRequests *int `json:"concurrentRequests,omitempty"`
}

// APIKey is a key as listed: its visible prefix, never the secret.
type APIKey struct {
	ResponseMeta
	ID        string     `json:"id"`
	AccountID string     `json:"accountId"`
	Name      string     `json:"name"`
	Prefix    string     `json:"prefix"`
	Scopes    []string   `json:"scopes"`
	Models    []string   `json:"models"` // empty: every model
	Limits    *KeyLimits `json:"limits,omitempty"`
	// Status is "active", "rotated", "expired" or "revoked".
	Status     string     `json:"status"`
	CreatedAt  time.Time  `json:"createdAt"`
	ExpiresAt  *time.Time `json:"expiresAt,omitempty"`
	RevokedAt  *time.Time `json:"revokedAt,omitempty"`
	ReplacedBy string     `json:"replacedBy"`
	// CacheDefault is options.cache for the key's calls that do not set it ("use", "refresh",
	// "bypass"); nil: none ("bypass").
	CacheDefault *string `json:"cacheDefault,omitempty"`
	// LastUsedAt is when the key last authenticated a call (kept to about a minute); nil: never.
	LastUsedAt *time.Time `json:"lastUsedAt,omitempty"`
}

// CreateKeyRequest is the body of POST /keys. Unset fields inherit the caller's own restrictions.
type CreateKeyRequest struct {
	// AccountID: another account (operator keys only); empty: the caller's.
	AccountID string     `json:"accountId,omitempty"`
	Name      string     `json:"name,omitempty"`
	Scopes    []string   `json:"scopes,omitempty"`
	Models    []string   `json:"models,omitempty"`
	Limits    *KeyLimits `json:"limits,omitempty"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	// CacheDefault: options.cache for the key's calls that do not set it ("use", "refresh", "bypass").
	CacheDefault *string `json:"cacheDefault,omitempty"`
}

// CreateKeyResponse holds the new key and its secret, shown only here.
type CreateKeyResponse struct {
	ResponseMeta
	Key    APIKey `json:"key"`
	Secret string `json:"secret"`
}

// ListKeysResponse is the answer of GET /keys.
type ListKeysResponse struct {
	ResponseMeta
	Keys []APIKey `json:"keys"`
}

// UpdateKeyRequest is the body of PATCH /keys/{id}: the fields set change.
type UpdateKeyRequest struct {
	Name      *string    `json:"name,omitempty"`
	Scopes    []string   `json:"scopes,omitempty"`
	Models    []string   `json:"models,omitempty"`
	Limits    *KeyLimits `json:"limits,omitempty"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	// CacheDefault: "use", "refresh" or "bypass" (with UpdateMask "cacheDefault" and nil: none).
	CacheDefault *string `json:"cacheDefault,omitempty"`
	// UpdateMask names the fields to change, e.g. "models" with no Models to allow every model.
	UpdateMask string `json:"updateMask,omitempty"`
}

// RotateKeyResponse holds the replacement, its secret (shown only here) and the replaced key.
type RotateKeyResponse struct {
	ResponseMeta
	Key      APIKey `json:"key"`
	Secret   string `json:"secret"`
	Replaced APIKey `json:"replaced"`
}

type keyResponse struct {
	ResponseMeta
	Key APIKey `json:"key"`
}

// PageParams select a page of a list: Limit 1..100 (0: 20), After the previous page's LastID.
type PageParams struct {
	Limit int
	After string
}

func (p PageParams) query() url.Values {
	q := url.Values{}
	if p.Limit != 0 {
		q.Set("limit", strconv.Itoa(p.Limit))
	}
	if p.After != "" {
		q.Set("after", p.After)
	}
	return q
}

// ProcessHistoryItem is one record of GET /process.
type ProcessHistoryItem struct {
	ID             string    `json:"id"`
	Kind           string    `json:"kind"`
	Model          string    `json:"model"`
	Status         string    `json:"status"`
	Input          string    `json:"input"`
	Output         string    `json:"output"`
	Usage          Usage     `json:"usage"`
	CreatedAt      time.Time `json:"createdAt"`
	ProcessingTime int       `json:"processingTime"`
	BatchID        *string   `json:"batchId,omitempty"`
	BatchIndex     *int      `json:"batchIndex,omitempty"`
	ErrorCode      *string   `json:"errorCode,omitempty"`
	// Cached is true when the output came from the response cache (no model ran).
	Cached bool `json:"cached"`
}

// ListProcessesParams filter GET /process.
type ListProcessesParams struct {
	PageParams
	Model string
	// Status is "completed", "failed" or "cancelled".
	Status string
	// StartDate and EndDate are YYYY-MM-DD (UTC), inclusive.
	StartDate, EndDate string
}

// ListProcessesResponse is a page of records, newest first.
type ListProcessesResponse struct {
	ResponseMeta
	Data    []ProcessHistoryItem `json:"data"`
	HasMore bool                 `json:"hasMore"`
	FirstID string               `json:"firstId"`
	LastID  string               `json:"lastId"`
}

// DailyUsage is one UTC day and model.
type DailyUsage struct {
	Date             string  `json:"date"`
	Model            string  `json:"model"`
	Requests         int64   `json:"requests"`
	PromptTokens     int64   `json:"promptTokens"`
	CompletionTokens int64   `json:"completionTokens"`
	TotalTokens      int64   `json:"totalTokens"`
	Cost             float64 `json:"cost"` // USD
}

// DailyUsageParams select GET /usage/daily (default: this month so far).
type DailyUsageParams struct {
	StartDate, EndDate, Model string
}

// DailyUsageResponse is the answer of GET /usage/daily.
type DailyUsageResponse struct {
	ResponseMeta
	Data []DailyUsage `json:"data"`
}

// WebhookDelivery is one event for one webhook.
type WebhookDelivery struct {
	ResponseMeta
	ID        string `json:"id"`
	WebhookID string `json:"webhookId"`
	Event     string `json:"event"`
	// Status is "pending", "delivered" or "failed".
	Status         string     `json:"status"`
	Attempts       int        `json:"attempts"`
	LastStatusCode *int       `json:"lastStatusCode,omitempty"`
	LastError      *string    `json:"lastError,omitempty"`
	NextAttemptAt  *time.Time `json:"nextAttemptAt,omitempty"`
	CreatedAt      time.Time  `json:"createdAt"`
	DeliveredAt    *time.Time `json:"deliveredAt,omitempty"`
}

// ListWebhookDeliveriesResponse is a page of deliveries, newest first.
type ListWebhookDeliveriesResponse struct {
	ResponseMeta
	Data    []WebhookDelivery `json:"data"`
	HasMore bool              `json:"hasMore"`
	FirstID string            `json:"firstId"`
	LastID  string            `json:"lastId"`
}

type redeliverResponse struct {
	ResponseMeta
	Delivery WebhookDelivery `json:"delivery"`
}

// TestWebhookResponse is the receiver's answer to a signed ping.
type TestWebhookResponse struct {
	ResponseMeta
	Delivered  bool    `json:"delivered"`
	StatusCode *int    `json:"statusCode,omitempty"`
	Error      *string `json:"error,omitempty"`
	Duration   int     `json:"duration"` // milliseconds
	DeliveryID string  `json:"deliveryId"`
}

// AccountUsage is this calendar month's usage (UTC) so far.
type AccountUsage struct {
	TotalRequests int64   `json:"totalRequests"`
	TotalTokens   int64   `json:"totalTokens"`
	TotalCost     float64 `json:"totalCost"` // USD
}

// Account is an account with this month's usage.
type Account struct {
	ResponseMeta
	ID        string       `json:"id"`
	Name      string       `json:"name"`
	Plan      string       `json:"plan"`
	Suspended bool         `json:"suspended"`
	CreatedAt time.Time    `json:"createdAt"`
	KeyCount  int          `json:"keyCount"`
	Usage     AccountUsage `json:"usage"`
}

type accountResponse struct {
	ResponseMeta
	Account Account `json:"account"`
}

// UpdateAccountRequest is the body of PATCH /admin/accounts/{id}: the fields set change.
type UpdateAccountRequest struct {
	Name      *string `json:"name,omitempty"`
	Plan      *string `json:"plan,omitempty"`
	Suspended *bool   `json:"suspended,omitempty"`
}

// ListAccountsResponse is a page of accounts, newest first.
type ListAccountsResponse struct {
	ResponseMeta
	Data    []Account `json:"data"`
	HasMore bool      `json:"hasMore"`
	FirstID string    `json:"firstId"`
	LastID  string    `json:"lastId"`
}

// AuditEvent is a change to a key or an account.
type AuditEvent struct {
	ID string `json:"id"`
	// Actor is the acting key's id, or "cli".
	Actor     string         `json:"actor"`
	AccountID string         `json:"accountId"`
	Action    string         `json:"action"`
	TargetID  string         `json:"targetId"`
	Details   map[string]any `json:"details"`
	CreatedAt time.Time      `json:"createdAt"`
}

// ListAuditEventsResponse is a page of audit events, newest first.
type ListAuditEventsResponse struct {
	ResponseMeta
	Data    []AuditEvent `json:"data"`
	HasMore bool         `json:"hasMore"`
	FirstID string       `json:"firstId"`
	LastID  string       `json:"lastId"`
}

func keysPath(accountID, id, verb string) string {
	path := "/keys"
	if accountID != "" {
		path = "/admin/accounts/" + url.PathEscape(accountID) + "/keys"
	}
	if id != "" {
		path += "/" + url.PathEscape(id)
	}
	if verb != "" {
		path += ":" + verb
	}
	return path
}

// CreateKey creates a key (POST /keys, or /admin/accounts/{id}/keys with AccountID); needs the keys scope.
func (c *Client) CreateKey(ctx context.Context, req CreateKeyRequest) (*CreateKeyResponse, error) {
	return doJSON[CreateKeyResponse](ctx, c, http.MethodPost, keysPath(req.AccountID, "", ""), nil, req)
}

// ListKeys lists an account's keys (GET /keys); accountID "" is the caller's.
func (c *Client) ListKeys(ctx context.Context, accountID string) (*ListKeysResponse, error) {
	return doJSON[ListKeysResponse](ctx, c, http.MethodGet, keysPath(accountID, "", ""), nil, nil)
}

// GetKey returns one key (GET /keys/{id}).
func (c *Client) GetKey(ctx context.Context, accountID, id string) (*APIKey, error) {
	return keyCall(ctx, c, http.MethodGet, keysPath(accountID, id, ""), nil)
}

// UpdateKey changes a key (PATCH /keys/{id}).
func (c *Client) UpdateKey(ctx context.Context, accountID, id string, req UpdateKeyRequest) (*APIKey, error) {
	return keyCall(ctx, c, http.MethodPatch, keysPath(accountID, id, ""), req)
}

// RotateKey replaces a key (POST /keys/{id}:rotate); the old one works graceSeconds more (nil: 86400).
// A key that is not active answers 409 conflict (IsConflict).
func (c *Client) RotateKey(ctx context.Context, accountID, id string, graceSeconds *int) (*RotateKeyResponse, error) {
	body := map[string]any{}
	if graceSeconds != nil {
		body["graceSeconds"] = *graceSeconds
	}
	return doJSON[RotateKeyResponse](ctx, c, http.MethodPost, keysPath(accountID, id, "rotate"), nil, body)
}

// RevokeKey revokes a key now (POST /keys/{id}:revoke); the calling key itself needs allowSelf.
func (c *Client) RevokeKey(ctx context.Context, accountID, id string, allowSelf bool) (*APIKey, error) {
	body := map[string]any{}
	if allowSelf {
		body["allowSelf"] = true
	}
	return keyCall(ctx, c, http.MethodPost, keysPath(accountID, id, "revoke"), body)
}

// ListProcesses pages through the account's processing records, newest first (GET /process).
func (c *Client) ListProcesses(ctx context.Context, params ListProcessesParams) (*ListProcessesResponse, error) {
	q := params.query()
	for name, value := range map[string]string{
		"model": params.Model, "status": params.Status, "start_date": params.StartDate, "end_date": params.EndDate,
	} {
		if value != "" {
			q.Set(name, value)
		}
	}
	return doJSON[ListProcessesResponse](ctx, c, http.MethodGet, "/process", q, nil)
}

// GetDailyUsage returns one row per UTC day and model (GET /usage/daily).
func (c *Client) GetDailyUsage(ctx context.Context, params DailyUsageParams) (*DailyUsageResponse, error) {
	q := url.Values{}
	for name, value := range map[string]string{
		"start_date": params.StartDate, "end_date": params.EndDate, "model": params.Model,
	} {
		if value != "" {
			q.Set(name, value)
		}
	}
	return doJSON[DailyUsageResponse](ctx, c, http.MethodGet, "/usage/daily", q, nil)
}

// ListWebhookDeliveries pages through a webhook's deliveries (GET /webhooks/{id}/deliveries);
// status "" is any.
func (c *Client) ListWebhookDeliveries(ctx context.Context, webhookID string, page PageParams, status string) (*ListWebhookDeliveriesResponse, error) {
	q := page.query()
	if status != "" {
		q.Set("status", status)
	}
	path := "/webhooks/" + url.PathEscape(webhookID) + "/deliveries"
	return doJSON[ListWebhookDeliveriesResponse](ctx, c, http.MethodGet, path, q, nil)
}

// RedeliverWebhookDelivery sends a delivered or failed delivery again now
// (POST /webhooks/{id}/deliveries/{deliveryId}:redeliver).
func (c *Client) RedeliverWebhookDelivery(ctx context.Context, webhookID, deliveryID string) (*WebhookDelivery, error) {
	path := "/webhooks/" + url.PathEscape(webhookID) + "/deliveries/" + url.PathEscape(deliveryID) + ":redeliver"
	r, err := doJSON[redeliverResponse](ctx, c, http.MethodPost, path, nil, map[string]any{})
	if err != nil {
		return nil, err
	}
	r.Delivery.RequestID = r.RequestID
	return &r.Delivery, nil
}

// TestWebhook sends a signed ping now and reports the receiver's answer (POST /webhooks/{id}:test).
func (c *Client) TestWebhook(ctx context.Context, id string) (*TestWebhookResponse, error) {
	path := "/webhooks/" + url.PathEscape(id) + ":test"
	return doJSON[TestWebhookResponse](ctx, c, http.MethodPost, path, nil, map[string]any{})
}

// CreateAccount creates an account on a plan ("" is free) (POST /admin/accounts; admin scope).
func (c *Client) CreateAccount(ctx context.Context, name, plan string) (*Account, error) {
	body := map[string]string{}
	if name != "" {
		body["name"] = name
	}
	if plan != "" {
		body["plan"] = plan
	}
	return accountCall(ctx, c, http.MethodPost, "/admin/accounts", body)
}

// ListAccounts pages through the accounts with this month's usage (GET /admin/accounts).
func (c *Client) ListAccounts(ctx context.Context, page PageParams) (*ListAccountsResponse, error) {
	return doJSON[ListAccountsResponse](ctx, c, http.MethodGet, "/admin/accounts", page.query(), nil)
}

// GetAccount returns one account (GET /admin/accounts/{id}).
func (c *Client) GetAccount(ctx context.Context, id string) (*Account, error) {
	return accountCall(ctx, c, http.MethodGet, "/admin/accounts/"+url.PathEscape(id), nil)
}

// UpdateAccount changes an account's name or plan, or suspends or resumes it (PATCH /admin/accounts/{id}).
func (c *Client) UpdateAccount(ctx context.Context, id string, req UpdateAccountRequest) (*Account, error) {
	return accountCall(ctx, c, http.MethodPatch, "/admin/accounts/"+url.PathEscape(id), req)
}

// ListAuditEvents pages through changes to keys and accounts (GET /admin/audit); accountID "" is all.
func (c *Client) ListAuditEvents(ctx context.Context, page PageParams, accountID string) (*ListAuditEventsResponse, error) {
	q := page.query()
	if accountID != "" {
		q.Set("account_id", accountID)
	}
	return doJSON[ListAuditEventsResponse](ctx, c, http.MethodGet, "/admin/audit", q, nil)
}

func accountCall(ctx context.Context, c *Client, method, path string, body any) (*Account, error) {
	r, err := doJSON[accountResponse](ctx, c, method, path, nil, body)
	if err != nil {
		return nil, err
	}
	r.Account.RequestID = r.RequestID
	return &r.Account, nil
}

func keyCall(ctx context.Context, c *Client, method, path string, body any) (*APIKey, error) {
	r, err := doJSON[keyResponse](ctx, c, method, path, nil, body)
	if err != nil {
		return nil, err
	}
	r.Key.RequestID = r.RequestID
	return &r.Key, nil
}
