package plutos

import (
	"encoding/json"
	"time"
)

// The REST shapes of protos/plutos/v1 (JSON names as in the API reference). The gRPC messages
// themselves are generated into gen/plutos/v1.

// ProcessOptions are generation options. A field left at its zero value is not sent, so the server
// applies its default (temperature 0.7, maxTokens 1000, topP 1.0, penalties 0); a field set through
// NewProcessOptions / With is sent even when it is zero:
//
//	plutos.ProcessOptions{Temperature: 0.7, MaxTokens: 100}             // the API reference's form
//	plutos.NewProcessOptions(plutos.Temperature(0), plutos.MaxTokens(50)) // temperature 0: greedy
//	opts.With(plutos.PresencePenalty(0))                                   // a copy with one more field
type ProcessOptions struct {
	// Temperature in [0, 2].
	Temperature float64
	// MaxTokens is the most tokens to generate.
	MaxTokens int
	// TopP (nucleus sampling) in (0, 1].
	TopP float64
	// FrequencyPenalty in [-2, 2].
	FrequencyPenalty float64
	// PresencePenalty in [-2, 2].
	PresencePenalty float64
	// SystemPrompt is a system message placed before the input.
	SystemPrompt string
	// Stop lists up to 4 sequences at which generation stops.
	Stop []string
	// Cache is the response cache mode: "use", "refresh" or "bypass" (the default when empty).
	Cache string

	// The numeric fields set explicitly (by a ProcessOption, or present in a response).
	set optionFields
}

type optionFields uint8

const (
	setTemperature optionFields = 1 << iota
	setMaxTokens
	setTopP
	setFrequencyPenalty
	setPresencePenalty
)

// A ProcessOption sets one numeric field of ProcessOptions, zero included.
type ProcessOption func(*ProcessOptions)

// Temperature sets the sampling temperature in [0, 2]; 0 is greedy decoding.
func Temperature(v float64) ProcessOption {
	return func(o *ProcessOptions) { o.Temperature, o.set = v, o.set|setTemperature }
}

// MaxTokens sets the most tokens to generate.
func MaxTokens(v int) ProcessOption {
	return func(o *ProcessOptions) { o.MaxTokens, o.set = v, o.set|setMaxTokens }
}

// TopP sets nucleus sampling in (0, 1].
func TopP(v float64) ProcessOption {
	return func(o *ProcessOptions) { o.TopP, o.set = v, o.set|setTopP }
}

// FrequencyPenalty sets the frequency penalty in [-2, 2].
func FrequencyPenalty(v float64) ProcessOption {
	return func(o *ProcessOptions) { o.FrequencyPenalty, o.set = v, o.set|setFrequencyPenalty }
}

// PresencePenalty sets the presence penalty in [-2, 2].
func PresencePenalty(v float64) ProcessOption {
	return func(o *ProcessOptions) { o.PresencePenalty, o.set = v, o.set|setPresencePenalty }
}

// NewProcessOptions returns options with the given fields set (and sent, even when zero).
func NewProcessOptions(opts ...ProcessOption) ProcessOptions {
	return ProcessOptions{}.With(opts...)
}

// With returns a copy of o with the given fields set (and sent, even when zero).
func (o ProcessOptions) With(opts ...ProcessOption) ProcessOptions {
	o.Stop = append([]string(nil), o.Stop...)
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// IsSet reports whether the option with this JSON name ("temperature", "maxTokens", "topP",
// "frequencyPenalty", "presencePenalty", "systemPrompt", "stop", "cache") is sent: it is set by a
// ProcessOption or non-zero. On options read from a response: whether the server reported it.
func (o ProcessOptions) IsSet(name string) bool {
	switch name {
	case "temperature":
		return o.Temperature != 0 || o.set&setTemperature != 0
	case "maxTokens":
		return o.MaxTokens != 0 || o.set&setMaxTokens != 0
	case "topP":
		return o.TopP != 0 || o.set&setTopP != 0
	case "frequencyPenalty":
		return o.FrequencyPenalty != 0 || o.set&setFrequencyPenalty != 0
	case "presencePenalty":
		return o.PresencePenalty != 0 || o.set&setPresencePenalty != 0
	case "systemPrompt":
		return o.SystemPrompt != ""
	case "stop":
		return len(o.Stop) > 0
	case "cache":
		return o.Cache != ""
	}
	return false
}

// IsZero reports whether no option is sent (the request then has no "options" object).
func (o ProcessOptions) IsZero() bool {
	for _, name := range []string{"temperature", "maxTokens", "topP", "frequencyPenalty", "presencePenalty",
		"systemPrompt", "stop", "cache"} {
		if o.IsSet(name) {
			return false
		}
	}
	return true
}

type processOptionsJSON struct {
	Temperature      *float64 `json:"temperature,omitempty"`
	MaxTokens        *int     `json:"maxTokens,omitempty"`
	TopP             *float64 `json:"topP,omitempty"`
	FrequencyPenalty *float64 `json:"frequencyPenalty,omitempty"`
	PresencePenalty  *float64 `json:"presencePenalty,omitempty"`
	SystemPrompt     string   `json:"systemPrompt,omitempty"`
	Stop             []string `json:"stop,omitempty"`
	Cache            string   `json:"cache,omitempty"`
}

func ptrIf[T any](set bool, v T) *T {
	if !set {
		return nil
	}
	return &v
}

// MarshalJSON writes the options that are sent (see IsSet).
func (o ProcessOptions) MarshalJSON() ([]byte, error) {
	return json.Marshal(processOptionsJSON{
		Temperature:      ptrIf(o.IsSet("temperature"), o.Temperature),
		MaxTokens:        ptrIf(o.IsSet("maxTokens"), o.MaxTokens),
		TopP:             ptrIf(o.IsSet("topP"), o.TopP),
		FrequencyPenalty: ptrIf(o.IsSet("frequencyPenalty"), o.FrequencyPenalty),
		PresencePenalty:  ptrIf(o.IsSet("presencePenalty"), o.PresencePenalty),
		SystemPrompt:     o.SystemPrompt,
		Stop:             o.Stop,
		Cache:            o.Cache,
	})
}

// UnmarshalJSON reads options as GetProcess returns them; a field present (even 0) counts as set.
func (o *ProcessOptions) UnmarshalJSON(data []byte) error {
	var in processOptionsJSON
	if err := json.Unmarshal(data, &in); err != nil {
		return err
	}
	*o = ProcessOptions{SystemPrompt: in.SystemPrompt, Stop: in.Stop, Cache: in.Cache}
	if in.Temperature != nil {
		Temperature(*in.Temperature)(o)
	}
	if in.MaxTokens != nil {
		MaxTokens(*in.MaxTokens)(o)
	}
	if in.TopP != nil {
		TopP(*in.TopP)(o)
	}
	if in.FrequencyPenalty != nil {
		FrequencyPenalty(*in.FrequencyPenalty)(o)
	}
	if in.PresencePenalty != nil {
		PresencePenalty(*in.PresencePenalty)(o)
	}
	return nil
}

// Usage holds the token counts of one call.
type Usage struct {
	PromptTokens     int `json:"promptTokens"`
	CompletionTokens int `json:"completionTokens"`
	TotalTokens      int `json:"totalTokens"`
}

// ProcessRequest is the body of POST /process.
type ProcessRequest struct {
	Input   string         `json:"input"`
	Model   string         `json:"model"`
	Options ProcessOptions `json:"options,omitzero"`
}

// ProcessResponse is the answer of POST /process.
type ProcessResponse struct {
	ResponseMeta
	// ID is "proc_" followed by 16 hex digits; see Client.GetProcess.
	ID        string    `json:"id"`
	Output    string    `json:"output"`
	Model     string    `json:"model"`
	Usage     Usage     `json:"usage"`
	CreatedAt time.Time `json:"createdAt"`
	// ProcessingTime is in milliseconds.
	ProcessingTime int `json:"processingTime"`
}

// GetProcessResponse is a stored processing result (GET /process/{id}).
type GetProcessResponse struct {
	ResponseMeta
	ID     string `json:"id"`
	Input  string `json:"input"`
	Output string `json:"output"`
	Model  string `json:"model"`
	// Options are the options the call ran with, defaults filled in.
	Options   ProcessOptions `json:"options"`
	Usage     Usage          `json:"usage"`
	CreatedAt time.Time      `json:"createdAt"`
	// ProcessingTime is in milliseconds.
	ProcessingTime int `json:"processingTime"`
	// Status is "completed", "cancelled" (a stream its client left) or "failed".
	Status string `json:"status"`
	// Cached is true when the output came from the response cache (no model ran).
	Cached bool `json:"cached"`
}

// BatchRequest is the body of POST /batch.
type BatchRequest struct {
	// Inputs holds 1 to 100 inputs.
	Inputs  []string       `json:"inputs"`
	Model   string         `json:"model"`
	Options ProcessOptions `json:"options,omitzero"`
}

// BatchItemError is the error of one batch item; the other items are unaffected.
type BatchItemError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// BatchResult is the result of one input, in input order.
type BatchResult struct {
	Input  string `json:"input"`
	Output string `json:"output"`
	Usage  Usage  `json:"usage"`
	// Error is set only when this item failed.
	Error *BatchItemError `json:"error,omitempty"`
}

// BatchResponse is the answer of POST /batch.
type BatchResponse struct {
	ResponseMeta
	// ID is "batch_" followed by 16 hex digits.
	ID         string        `json:"id"`
	Results    []BatchResult `json:"results"`
	TotalUsage Usage         `json:"totalUsage"`
	CreatedAt  time.Time     `json:"createdAt"`
	// ProcessingTime is in milliseconds.
	ProcessingTime int `json:"processingTime"`
}

// StreamRequest is the body of POST /stream.
type StreamRequest = ProcessRequest

// Stream event types.
const (
	EventChunk    = "chunk"
	EventComplete = "complete"
)

// StreamEvent is one event of a stream: chunks (Type "chunk", Chunk "partial", Output the new
// text), then one complete event (Type "complete", Chunk "final", Output the whole text, and
// Usage, ID, Model, CreatedAt, ProcessingTime).
type StreamEvent struct {
	// Type is the SSE event name: EventChunk or EventComplete.
	Type           string    `json:"-"`
	Chunk          string    `json:"chunk"`
	Output         string    `json:"output"`
	Usage          *Usage    `json:"usage,omitempty"`
	ID             string    `json:"id,omitempty"`
	Model          string    `json:"model,omitempty"`
	CreatedAt      time.Time `json:"createdAt,omitzero"`
	ProcessingTime int       `json:"processingTime,omitempty"`
}

// IsFinal reports whether this is the complete event.
func (e StreamEvent) IsFinal() bool { return e.Type == EventComplete }

// Pricing is the price in USD per 1K tokens.
type Pricing struct {
	InputTokens  float64 `json:"inputTokens"`
	OutputTokens float64 `json:"outputTokens"`
}

// Model is one entry of the model catalogue.
type Model struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	// MaxTokens is the model's context size in tokens.
	MaxTokens         int     `json:"maxTokens"`
	SupportsStreaming bool    `json:"supportsStreaming"`
	Pricing           Pricing `json:"pricing"`
}

// ListModelsResponse is the answer of GET /models.
type ListModelsResponse struct {
	ResponseMeta
	Models []Model `json:"models"`
}

// UsageParams selects the period of GetUsage; both dates are YYYY-MM-DD, inclusive, and optional
// (default: the current calendar month).
type UsageParams struct {
	StartDate string
	EndDate   string
}

// UsagePeriod is the period a usage report covers.
type UsagePeriod struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// UsageTotals are the usage figures of a period.
type UsageTotals struct {
	TotalRequests int64 `json:"totalRequests"`
	TotalTokens   int64 `json:"totalTokens"`
	// TotalCost is in USD.
	TotalCost       float64          `json:"totalCost"`
	RequestsByModel map[string]int64 `json:"requestsByModel"`
	// CachedRequests counts requests answered from the response cache (in TotalRequests too).
	CachedRequests int64 `json:"cachedRequests"`
}

// UsageLimits are the account's rate limits.
type UsageLimits struct {
	RequestsPerMinute int `json:"requestsPerMinute"`
	RequestsPerHour   int `json:"requestsPerHour"`
	RequestsPerDay    int `json:"requestsPerDay"`
	// MonthlyTokens is the plan's monthly token quota; 0: none.
	MonthlyTokens int64 `json:"monthlyTokens"`
}

// UsageResponse is the answer of GET /usage.
type UsageResponse struct {
	ResponseMeta
	Period UsagePeriod `json:"period"`
	Usage  UsageTotals `json:"usage"`
	Limits UsageLimits `json:"limits"`
}

// Webhook events.
const (
	WebhookProcessingCompleted = "processing.completed"
	WebhookProcessingFailed    = "processing.failed"
	WebhookUsageThreshold      = "usage.threshold"
)

// CreateWebhookRequest is the body of POST /webhooks.
type CreateWebhookRequest struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
	// Secret signs the deliveries: "whsec_" + base64 (the Standard Webhooks form) or any other
	// text. Empty: the server generates one and returns it in CreateWebhookResponse.Secret.
	Secret string `json:"secret,omitempty"`
}

// CreateWebhookResponse is the answer of POST /webhooks: the webhook, and the secret the server
// generated.
type CreateWebhookResponse struct {
	Webhook
	// Secret is the signing secret the server generated ("whsec_" + base64 of 32 random bytes),
	// set only when the request gave none. It is returned only here: store it.
	Secret string `json:"secret,omitempty"`
}

// Webhook is a registered webhook.
type Webhook struct {
	ResponseMeta
	// ID is "wh_" followed by 16 hex digits.
	ID     string   `json:"id"`
	URL    string   `json:"url"`
	Events []string `json:"events"`
	// HasSecret tells whether deliveries are signed; the secret itself is never returned.
	HasSecret bool      `json:"hasSecret"`
	CreatedAt time.Time `json:"createdAt"`
}

// ListWebhooksResponse is the answer of GET /webhooks.
type ListWebhooksResponse struct {
	ResponseMeta
	Webhooks []Webhook `json:"webhooks"`
}

// DeleteWebhookResponse is the answer of DELETE /webhooks/{id}.
type DeleteWebhookResponse struct {
	ResponseMeta
	ID      string `json:"id"`
	Deleted bool   `json:"deleted"`
}

// ResponseMeta is embedded in every result: the request id of the HTTP response that carried it
// (quote it when reporting a problem). Not part of the JSON.
type ResponseMeta struct {
	RequestID string `json:"-"`
}

func (m *ResponseMeta) setRequestID(id string) { m.RequestID = id }

type requestIDSetter interface{ setRequestID(id string) }
