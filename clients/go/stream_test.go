package plutos

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func frame(event string, data any) string {
	b, _ := json.Marshal(data)
	return fmt.Sprintf("event: %s\ndata: %s\n\n", event, b)
}

var (
	streamChunks = []string{
		frame("chunk", map[string]any{"chunk": "partial", "output": "Hello"}),
		": keep-alive\n\n",
		frame("chunk", map[string]any{"chunk": "partial", "output": " world"}),
		frame("chunk", map[string]any{"chunk": "partial", "output": "!"}),
	}
	streamComplete = frame("complete", map[string]any{
		"chunk": "final", "output": "Hello world!", "id": "proc_0123456789abcdef", "model": "m",
		"usage":     map[string]any{"promptTokens": 3, "completionTokens": 3, "totalTokens": 6},
		"createdAt": "2024-01-01T12:00:00Z", "processingTime": 12,
	})
)

func sseHandler(frames []string, delay time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for _, f := range frames {
			if _, err := io.WriteString(w, f); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			if delay > 0 {
				select {
				case <-time.After(delay):
				case <-r.Context().Done():
					return
				}
			}
		}
	}
}

func TestSSEReaderHandlesLineEndingsCommentsAndSplits(t *testing.T) {
	input := ": hi\r\nevent: a\r\ndata: 1\r\n\r\nevent: b\rdata: x\rdata: y\r\rdata: {\"o\":\"héllo 世界 🌍\"}\n\nevent: c\ndata: tail"
	// One byte at a time, so every frame and rune is split.
	r := newSSEReader(iotest.OneByteReader(strings.NewReader(input)))
	// The last event lacks its closing blank line: discarded, as the standard says.
	want := []sseEvent{{"a", "1"}, {"b", "x\ny"}, {"message", `{"o":"héllo 世界 🌍"}`}}
	for i, w := range want {
		got, err := r.Next()
		if err != nil || got != w {
			t.Fatalf("event %d: %+v %v, want %+v", i, got, err, w)
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("want EOF, got %v", err)
	}
}

func TestStreamYieldsChunksThenComplete(t *testing.T) {
	ts := newTestServer(t, sseHandler(append(streamChunks, streamComplete), 5*time.Millisecond))
	s, err := ts.client().Stream(StreamRequest{Input: "hi", Model: "m", Options: ProcessOptions{MaxTokens: 5}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got []string
	var last StreamEvent
	for s.Next() {
		ev := s.Event()
		got = append(got, ev.Type+":"+ev.Chunk+":"+ev.Output)
		last = ev
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	want := "chunk:partial:Hello|chunk:partial: world|chunk:partial:!|complete:final:Hello world!"
	if strings.Join(got, "|") != want {
		t.Fatalf("got %s", strings.Join(got, "|"))
	}
	if !last.IsFinal() || last.ID != "proc_0123456789abcdef" || last.Usage == nil || last.Usage.TotalTokens != 6 || last.ProcessingTime != 12 {
		t.Fatalf("complete event %+v", last)
	}
	r := ts.Requests()[0]
	if r.Method != "POST" || r.Path != "/v1/stream" || r.Header.Get("Accept") != "text/event-stream" ||
		string(r.Body) != `{"input":"hi","model":"m","options":{"maxTokens":5}}` {
		t.Fatalf("%s %s %s %s", r.Method, r.Path, r.Header.Get("Accept"), r.Body)
	}
}

func TestStreamEventsIteratorAndFinal(t *testing.T) {
	ts := newTestServer(t, sseHandler(append(streamChunks, streamComplete), 0))
	s, err := ts.client().Stream(StreamRequest{Input: "hi", Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	var text string
	for ev, err := range s.Events() {
		if err != nil {
			t.Fatal(err)
		}
		if !ev.IsFinal() {
			text += ev.Output
		}
	}
	if text != "Hello world!" {
		t.Fatalf("%q", text)
	}
	s2, err := ts.client().Stream(StreamRequest{Input: "hi", Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	final, err := s2.Final()
	if err != nil || final.Output != "Hello world!" {
		t.Fatalf("%+v %v", final, err)
	}
}

func TestStreamErrorsBeforeTheStreamAreTypedAndRetried(t *testing.T) {
	ts := newTestServer(t, errorHandler(401, CodeInvalidAPIKey, "bad key", nil))
	if _, err := ts.client().Stream(StreamRequest{Input: "hi", Model: "m"}); !IsAuthentication(err) {
		t.Fatalf("%v", err)
	}
	ts2 := newTestServer(t, errorHandler(503, CodeServiceUnavailable, "busy", nil), sseHandler(append(streamChunks, streamComplete), 0))
	s, err := ts2.client().Stream(StreamRequest{Input: "hi", Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Final(); err != nil {
		t.Fatal(err)
	}
	if n := len(ts2.Requests()); n != 2 {
		t.Fatalf("%d requests", n)
	}
}

func TestStreamErrorEventEndsTheStreamWithAPIError(t *testing.T) {
	ts := newTestServer(t, sseHandler([]string{
		streamChunks[0],
		frame("error", map[string]any{"error": map[string]any{"code": "rate_limit_exceeded", "message": "slow down", "details": map[string]any{"retryAfter": 7}, "requestId": "req_s"}}),
	}, 0))
	s, err := ts.client().Stream(StreamRequest{Input: "hi", Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for s.Next() {
		n++
	}
	var apiErr *APIError
	if !errors.As(s.Err(), &apiErr) {
		t.Fatalf("%T %v", s.Err(), s.Err())
	}
	if n != 1 || apiErr.Status != 429 || apiErr.Code != CodeRateLimitExceeded || apiErr.RetryAfter != 7*time.Second ||
		apiErr.RequestID != "req_s" || !IsRateLimit(s.Err()) {
		t.Fatalf("n=%d %+v", n, apiErr)
	}
	if len(ts.Requests()) != 1 {
		t.Fatal("errors after the stream started must not be retried")
	}
}

func TestStreamEndingWithoutCompleteIsAConnectionError(t *testing.T) {
	ts := newTestServer(t, sseHandler(streamChunks, 0))
	s, err := ts.client().Stream(StreamRequest{Input: "hi", Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Final()
	var connErr *ConnectionError
	if !errors.As(err, &connErr) {
		t.Fatalf("%T %v", err, err)
	}
}

func TestClosingAStreamEarlyClosesTheConnection(t *testing.T) {
	closed := make(chan struct{})
	ts := newTestServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 1000; i++ {
			if _, err := io.WriteString(w, frame("chunk", map[string]any{"chunk": "partial", "output": fmt.Sprint(i)})); err != nil {
				break
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				close(closed)
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	s, err := ts.client().Stream(StreamRequest{Input: "hi", Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, err := range s.Events() {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 3 {
			break
		}
	}
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("the server never saw the connection close")
	}
}

func TestStreamTimeoutCoversOnlyTheHeaders(t *testing.T) {
	// Frames 60ms apart, well past the 30ms timeout: the stream must still be read to the end.
	ts := newTestServer(t, sseHandler(append(streamChunks, streamComplete), 60*time.Millisecond))
	s, err := ts.client(WithTimeout(30 * time.Millisecond)).Stream(StreamRequest{Input: "hi", Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Final(); err != nil {
		t.Fatal(err)
	}
}
