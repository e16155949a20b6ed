// Command load holds many concurrent server-sent-event streams open against the gateway (or
// straight against the mock upstream) for the concurrent-streams benchmark
// (bench/concurrent_streams.py), and checks and times every chunk.
//
// Each chunk's text carries "|<seq>|<due time, Unix ns>|" (stamped by the mock upstream); a stream
// passes when it answered 200, got chunks 0..chunks-1 exactly once and in order, and ended properly
// (the reference's "event: complete", OpenAI's "data: [DONE]"). The delay of a chunk is its arrival
// time minus the time it was due at the mock.
//
// Output on stdout, one JSON object per line: progress every -report
// ({"t": s, "open": n, "started": n, "ended": n, "errors": n, "chunks": n}), then the summary
// ({"final": true, ...}, see summary below).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	target   = flag.String("url", "", "full URL to POST to")
	api      = flag.String("api", "reference", "request and stream format: reference (/v1/stream), openai (chat completions with stream: true)")
	key      = flag.String("key", "", "API key (Authorization: Bearer)")
	model    = flag.String("model", "bench-streams", "model id")
	streams  = flag.Int("streams", 100, "concurrent streams")
	chunks   = flag.Int("chunks", 20, "chunks per stream (sent as maxTokens / max_tokens)")
	ramp     = flag.Duration("ramp", 5*time.Second, "time over which the streams are opened, evenly")
	abortAt  = flag.Duration("abort-after", 0, "if set: every stream still open is closed at once this long after the start")
	report   = flag.Duration("report", 250*time.Millisecond, "progress line interval")
	deadline = flag.Duration("timeout", 0, "give up on a stream after this long (default: ramp + 3x the expected length + 30s)")
)

// Delays are counted in 50 µs buckets up to 20 s.
const bucketUs = 50
const buckets = 20_000_000 / bucketUs

var (
	hist                                     = make([]atomic.Int64, buckets+1)
	open, started, ended, failed, chunkCount atomic.Int64
	complete, missing, disorder, aborted     atomic.Int64
	refused                                  atomic.Int64
	errMu                                    sync.Mutex
	errSamples                               = map[string]int{}
)

func noteError(kind string) {
	failed.Add(1)
	errMu.Lock()
	errSamples[kind]++
	errMu.Unlock()
}

func body() []byte {
	if *api == "openai" {
		b, _ := json.Marshal(map[string]any{
			"model": *model, "messages": []map[string]string{{"role": "user", "content": "Tell me a long story."}},
			"max_tokens": *chunks, "stream": true,
		})
		return b
	}
	b, _ := json.Marshal(map[string]any{"input": "Tell me a long story.", "model": *model, "options": map[string]any{"maxTokens": *chunks}})
	return b
}

var (
	bar       = []byte("|")
	eventLine = []byte("event: ")
	dataLine  = []byte("data: ")
	done      = []byte("data: [DONE]")
)

// one runs a stream; returns when it ends.
func one(ctx context.Context, client *http.Client, payload []byte) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, *target, bytes.NewReader(payload))
	req.Header.Set("content-type", "application/json")
	if *key != "" {
		req.Header.Set("authorization", "Bearer "+*key)
	}
	started.Add(1)
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil && *abortAt > 0 {
			aborted.Add(1)
			return
		}
		noteError("request: " + shorten(err.Error()))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		refused.Add(1) // answered with an error status: never admitted, so never recorded
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		noteError(fmt.Sprintf("status %d: %s", resp.StatusCode, shorten(string(b))))
		return
	}
	open.Add(1)
	defer open.Add(-1)
	r := bufio.NewReaderSize(resp.Body, 4096)
	next := 0
	event := ""
	finished := false
	for {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer: the final event's whole output. Skip to its end.
			for err == bufio.ErrBufferFull {
				_, err = r.ReadSlice('\n')
			}
			if err == nil {
				continue
			}
		}
		if err != nil {
			if ctx.Err() != nil && *abortAt > 0 {
				aborted.Add(1)
				return
			}
			if err == io.EOF && finished {
				break
			}
			noteError("read: " + shorten(err.Error()))
			return
		}
		now := time.Now().UnixNano()
		if bytes.HasPrefix(line, eventLine) {
			event = string(bytes.TrimSpace(line[len(eventLine):]))
			if event == "complete" {
				finished = true
			} else if event == "error" {
				noteError("event: error")
			}
			continue
		}
		if !bytes.HasPrefix(line, dataLine) {
			continue
		}
		if *api == "openai" {
			if bytes.HasPrefix(line, done) {
				finished = true
				continue
			}
		} else if event != "chunk" {
			continue
		}
		// Every "|seq|nanos|" in the line (one per chunk).
		rest := line
		for {
			i := bytes.Index(rest, bar)
			if i < 0 {
				break
			}
			rest = rest[i+1:]
			j := bytes.Index(rest, bar)
			if j < 0 {
				break
			}
			seq, err1 := strconv.Atoi(string(rest[:j]))
			rest = rest[j+1:]
			k := bytes.Index(rest, bar)
			if k < 0 || err1 != nil {
				break
			}
			sent, err2 := strconv.ParseInt(string(rest[:k]), 10, 64)
			rest = rest[k+1:]
			if err2 != nil {
				break
			}
			if seq != next {
				if seq > next {
					missing.Add(int64(seq - next))
				} else {
					disorder.Add(1)
				}
			}
			next = seq + 1
			chunkCount.Add(1)
			us := (now - sent) / 1000
			b := us / bucketUs
			if b < 0 {
				b = 0
			}
			if b > buckets {
				b = buckets
			}
			hist[b].Add(1)
		}
	}
	if next < *chunks {
		missing.Add(int64(*chunks - next))
	}
	if next == *chunks {
		complete.Add(1)
	} else {
		noteError("incomplete stream")
	}
}

func shorten(s string) string {
	if len(s) > 120 {
		return s[:120]
	}
	return s
}

func percentile(total int64, p float64) float64 {
	if total == 0 {
		return 0
	}
	want := int64(float64(total)*p + 0.999999)
	var seen int64
	for i := range hist {
		seen += hist[i].Load()
		if seen >= want {
			return float64((i+1)*bucketUs) / 1000
		}
	}
	return float64(buckets*bucketUs) / 1000
}

func progress(t0 time.Time, final bool) map[string]any {
	return map[string]any{
		"t": time.Since(t0).Seconds(), "open": open.Load(), "started": started.Load(), "ended": ended.Load(),
		"errors": failed.Load(), "chunks": chunkCount.Load(), "final": final,
	}
}

func main() {
	flag.Parse()
	if *target == "" {
		fmt.Fprintln(os.Stderr, "-url is required")
		os.Exit(2)
	}
	timeout := *deadline
	if timeout == 0 {
		timeout = *ramp + 3*time.Duration(*chunks)*50*time.Millisecond + 30*time.Second
	}
	transport := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second}).DialContext,
		MaxIdleConns:        *streams,
		MaxIdleConnsPerHost: *streams,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		WriteBufferSize:     4096,
		ReadBufferSize:      4096,
	}
	client := &http.Client{Transport: transport}
	payload := body()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := json.NewEncoder(os.Stdout)
	t0 := time.Now()
	ticker := time.NewTicker(*report)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-ticker.C:
				_ = out.Encode(progress(t0, false))
			}
		}
	}()
	if *abortAt > 0 {
		time.AfterFunc(*abortAt, cancel)
	}
	var wg sync.WaitGroup
	for i := 0; i < *streams; i++ {
		due := t0.Add(time.Duration(int64(*ramp) * int64(i) / int64(*streams)))
		time.Sleep(time.Until(due))
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer ended.Add(1)
			sctx, scancel := context.WithTimeout(ctx, timeout)
			defer scancel()
			one(sctx, client, payload)
		}()
	}
	wg.Wait()
	close(stop)
	ticker.Stop()
	transport.CloseIdleConnections()
	total := chunkCount.Load()
	errMu.Lock()
	samples := map[string]int{}
	for k, v := range errSamples {
		samples[k] = v
	}
	errMu.Unlock()
	var maxMs float64
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].Load() > 0 {
			maxMs = float64((i+1)*bucketUs) / 1000
			break
		}
	}
	summary := progress(t0, true)
	summary["streams"] = *streams
	summary["chunks_per_stream"] = *chunks
	summary["complete_streams"] = complete.Load()
	summary["aborted_streams"] = aborted.Load()
	summary["refused_streams"] = refused.Load()
	summary["missing_chunks"] = missing.Load()
	summary["out_of_order"] = disorder.Load()
	summary["error_kinds"] = samples
	summary["delay_ms"] = map[string]float64{
		"p50": percentile(total, 0.50), "p90": percentile(total, 0.90), "p99": percentile(total, 0.99),
		"p999": percentile(total, 0.999), "max": maxMs,
	}
	// The histogram itself (non-empty buckets: [upper bound ms, count]) for plots.
	var hs [][2]float64
	for i := range hist {
		if c := hist[i].Load(); c > 0 {
			hs = append(hs, [2]float64{float64((i+1)*bucketUs) / 1000, float64(c)})
		}
	}
	sort.Slice(hs, func(a, b int) bool { return hs[a][0] < hs[b][0] })
	summary["delay_histogram_ms"] = hs
	var usage syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &usage) == nil {
		summary["cpu_s"] = float64(usage.Utime.Nano()+usage.Stime.Nano()) / 1e9
	}
	_ = out.Encode(summary)
}
