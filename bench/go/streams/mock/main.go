// Command mock is an OpenAI-compatible upstream for the concurrent-streams benchmark
// (bench/concurrent_streams.py): every POST .../chat/completions with "stream": true is answered
// with server-sent events, one content chunk every -interval, as many chunks as the request's
// max_tokens. Each chunk's content is "|<seq>|<due time, Unix ns>|" so a client behind the gateway
// can check that it got every chunk, in order, and how long each took to reach it.
//
// A request without "stream": true gets one JSON completion at once. Written in Go so that the
// mock costs the gateway as little CPU as possible on a shared machine.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"time"
)

var interval = flag.Duration("interval", 50*time.Millisecond, "time between two content chunks")

type request struct {
	MaxTokens           int  `json:"max_tokens"`
	MaxCompletionTokens int  `json:"max_completion_tokens"`
	Stream              bool `json:"stream"`
}

const prefix = `data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","model":"bench","choices":[{"index":0,"delta":{`

func completions(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	var req request
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		http.Error(w, `{"error":{"message":"bad request"}}`, http.StatusBadRequest)
		return
	}
	n := req.MaxTokens
	if n == 0 {
		n = req.MaxCompletionTokens
	}
	if n <= 0 {
		n = 16
	}
	if !req.Stream {
		w.Header().Set("content-type", "application/json")
		fmt.Fprintf(w, `{"id":"chatcmpl-mock","object":"chat.completion","model":"bench","choices":[{"index":0,`+
			`"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],`+
			`"usage":{"prompt_tokens":8,"completion_tokens":1,"total_tokens":9}}`)
		return
	}
	flusher, _ := w.(http.Flusher)
	w.Header().Set("content-type", "text/event-stream")
	w.Header().Set("x-request-id", "mock-streams")
	w.WriteHeader(http.StatusOK)
	buf := bytes.NewBuffer(make([]byte, 0, 256))
	buf.WriteString(prefix + `"role":"assistant"},"finish_reason":null}]}` + "\n\n")
	if _, err := w.Write(buf.Bytes()); err != nil {
		return
	}
	flusher.Flush()
	start := time.Now()
	ctx := r.Context()
	for seq := 0; seq < n; seq++ {
		due := start.Add(time.Duration(seq+1) * *interval)
		if wait := time.Until(due); wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
		}
		buf.Reset()
		buf.WriteString(prefix + `"content":"|`)
		buf.WriteString(strconv.Itoa(seq))
		buf.WriteByte('|')
		// The time the chunk was due, not when it left: a gateway that falls behind holds the mock
		// back (its socket fills up), and that delay is the gateway's too.
		buf.WriteString(strconv.FormatInt(due.UnixNano(), 10))
		buf.WriteString(`|"},"finish_reason":null}]}` + "\n\n")
		if _, err := w.Write(buf.Bytes()); err != nil {
			return
		}
		flusher.Flush()
	}
	fmt.Fprintf(w, prefix+`},"finish_reason":"stop"}]}`+"\n\n")
	fmt.Fprintf(w, `data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","model":"bench","choices":[],`+
		`"usage":{"prompt_tokens":8,"completion_tokens":%d,"total_tokens":%d}}`+"\n\ndata: [DONE]\n\n", n, n+8)
	flusher.Flush()
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening %d\n", ln.Addr().(*net.TCPAddr).Port)
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/chat/completions", completions)
	mux.HandleFunc("/chat/completions", completions)
	server := &http.Server{Handler: mux, IdleTimeout: 120 * time.Second, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(server.Serve(ln))
}
