package plutos

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// The shared corpus (clients/sse_corpus.json): the gateway's upstream reader and every SDK parse
// these streams alike.
type corpusCase struct {
	Name   string `json:"name"`
	Stream string `json:"stream"`
	Events []struct {
		Event string `json:"event"`
		Data  string `json:"data"`
	} `json:"events"`
}

func parseAll(t *testing.T, r io.Reader) []sseEvent {
	t.Helper()
	reader := newSSEReader(r)
	out := []sseEvent{}
	for {
		ev, err := reader.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
}

func TestSSECorpus(t *testing.T) {
	raw, err := os.ReadFile("../sse_corpus.json")
	if err != nil {
		t.Fatal(err)
	}
	var corpus struct {
		Cases []corpusCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &corpus); err != nil {
		t.Fatal(err)
	}
	for _, c := range corpus.Cases {
		t.Run(c.Name, func(t *testing.T) {
			want := []sseEvent{}
			for _, e := range c.Events {
				want = append(want, sseEvent{Event: e.Event, Data: e.Data})
			}
			if got := parseAll(t, strings.NewReader(c.Stream)); !reflect.DeepEqual(got, want) {
				t.Fatalf("whole: got %q, want %q", got, want)
			}
			for cut := 1; cut < len(c.Stream); cut++ {
				r := io.MultiReader(strings.NewReader(c.Stream[:cut]), strings.NewReader(c.Stream[cut:]))
				if got := parseAll(t, r); !reflect.DeepEqual(got, want) {
					t.Fatalf("cut at %d: got %q, want %q", cut, got, want)
				}
			}
			if got := parseAll(t, iotest.OneByteReader(strings.NewReader(c.Stream))); !reflect.DeepEqual(got, want) {
				t.Fatalf("byte by byte: got %q, want %q", got, want)
			}
		})
	}
}
