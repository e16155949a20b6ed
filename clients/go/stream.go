package plutos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"sync"
)

// Stream reads the events of one POST /stream call: chunk events, then one complete event.
//
//	stream, err := client.Stream(plutos.StreamRequest{Input: "...", Model: "..."})
//	if err != nil { ... }
//	defer stream.Close()
//	for stream.Next() {
//		ev := stream.Event()
//		if ev.IsFinal() { fmt.Println("\n", ev.Usage.TotalTokens) } else { fmt.Print(ev.Output) }
//	}
//	if err := stream.Err(); err != nil { ... }
//
// or, with range-over-func: for ev, err := range stream.Events() { ... }.
//
// An "error" event ends the stream with an *APIError; a stream that ends before its complete
// event ends with a *ConnectionError. Close releases the connection (and makes the server stop
// generating) whenever called.
type Stream struct {
	ctx       context.Context
	body      io.ReadCloser
	reader    *sseReader
	requestID string

	event     StreamEvent
	err       error
	done      bool
	completed bool
	closeOnce sync.Once
}

// Stream starts a streamed processing call (POST /stream). It returns once the response headers
// arrive; errors up to then (and their retries) are handled as for other calls.
func (c *Client) Stream(req StreamRequest) (*Stream, error) {
	return c.StreamWithContext(context.Background(), req)
}

// StreamWithContext is Stream with a context; cancelling it ends the stream.
func (c *Client) StreamWithContext(ctx context.Context, req StreamRequest) (*Stream, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	resp, _, err := c.send(ctx, http.MethodPost, "/stream", nil, req, true)
	if err != nil {
		return nil, err
	}
	return &Stream{
		ctx:       ctx,
		body:      resp.Body,
		reader:    newSSEReader(resp.Body),
		requestID: resp.Header.Get("X-Request-Id"),
	}, nil
}

// Next advances to the next event, returning false at the end of the stream or on an error
// (see Err). The connection is closed once Next returns false.
func (s *Stream) Next() bool {
	if s.done {
		return false
	}
	for {
		sse, err := s.reader.Next()
		if err != nil {
			switch {
			case s.ctx.Err() != nil:
				s.fail(s.ctx.Err())
			case errors.Is(err, io.EOF):
				if !s.completed {
					s.fail(&ConnectionError{Err: errors.New("the stream ended before its complete event"), RequestID: s.requestID})
				} else {
					s.fail(nil)
				}
			default:
				s.fail(&ConnectionError{Err: err, RequestID: s.requestID})
			}
			return false
		}
		if sse.Data == "" && sse.Event != "error" {
			continue
		}
		kind := sse.Event
		if kind == "message" {
			kind = guessKind(sse.Data)
		}
		switch kind {
		case "error":
			apiErr := newAPIError(0, nil, []byte(sse.Data))
			if apiErr.RequestID == "" {
				apiErr.RequestID = s.requestID
			}
			s.fail(apiErr)
			return false
		case EventChunk, EventComplete:
			var ev StreamEvent
			if err := json.Unmarshal([]byte(sse.Data), &ev); err != nil {
				s.fail(fmt.Errorf("plutos: invalid stream event data %q: %w", truncate(sse.Data, 200), err))
				return false
			}
			ev.Type = kind
			if kind == EventComplete {
				s.completed = true
			}
			s.event = ev
			return true
		default:
			// Unknown event names are skipped, so the server can add new ones.
		}
	}
}

// Event returns the event Next advanced to.
func (s *Stream) Event() StreamEvent { return s.event }

// Err returns the error that ended the stream, or nil after a complete event.
func (s *Stream) Err() error { return s.err }

// Close closes the connection; it is safe to call more than once and after the end.
func (s *Stream) Close() error {
	var err error
	s.closeOnce.Do(func() { err = s.body.Close() })
	s.done = true
	return err
}

// Events iterates the events; the last pair carries the error, if one ended the stream. The
// connection is closed when the loop ends, early or not.
func (s *Stream) Events() iter.Seq2[StreamEvent, error] {
	return func(yield func(StreamEvent, error) bool) {
		defer s.Close()
		for s.Next() {
			if !yield(s.Event(), nil) {
				return
			}
		}
		if s.err != nil {
			yield(StreamEvent{}, s.err)
		}
	}
}

// Final reads the rest of the stream and returns its complete event.
func (s *Stream) Final() (*StreamEvent, error) {
	defer s.Close()
	var final *StreamEvent
	for s.Next() {
		if ev := s.Event(); ev.IsFinal() {
			final = &ev
		}
	}
	if s.err != nil {
		return nil, s.err
	}
	return final, nil
}

func (s *Stream) fail(err error) {
	s.err = err
	s.Close()
}

func guessKind(data string) string {
	var probe struct {
		Chunk string          `json:"chunk"`
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal([]byte(data), &probe) == nil {
		if probe.Error != nil {
			return "error"
		}
		if probe.Chunk == "final" {
			return EventComplete
		}
	}
	return EventChunk
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
