// Streams an answer to stdout:
//
//	PLUTOS_API_KEY=... PLUTOS_BASE_URL=http://localhost:3000/v1 go run ./examples/stream -model MODEL
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"

	"github.com/plutos-ai/go-sdk"
)

func main() {
	model := flag.String("model", "gpt-4", "model id")
	input := flag.String("input", "Write a short story about a robot.", "prompt")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	client := plutos.NewClient("", "development") // key from PLUTOS_API_KEY
	stream, err := client.StreamWithContext(ctx, plutos.StreamRequest{
		Input:   *input,
		Model:   *model,
		Options: plutos.ProcessOptions{MaxTokens: 200},
	})
	if err != nil {
		log.Fatal(err)
	}
	for ev, err := range stream.Events() {
		switch {
		case err != nil:
			log.Fatal(err)
		case ev.IsFinal():
			fmt.Printf("\nComplete! %d tokens, id %s\n", ev.Usage.TotalTokens, ev.ID)
		default:
			fmt.Print(ev.Output)
		}
	}
}
