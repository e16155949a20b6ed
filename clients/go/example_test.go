package plutos_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	plutos "github.com/plutos-ai/go-sdk"
)

func ExampleClient_ProcessData() {
	client := plutos.NewClient("your-api-key", "production")

	result, err := client.ProcessData(plutos.ProcessRequest{
		Input: "What is the capital of France?",
		Model: "gpt-4",
		Options: plutos.ProcessOptions{
			Temperature: 0.7,
			MaxTokens:   100,
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(result.Output)
}

func ExampleClient_Stream() {
	client := plutos.NewClient("", "development") // key from PLUTOS_API_KEY
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	stream, err := client.StreamWithContext(ctx, plutos.StreamRequest{Input: "Write a haiku.", Model: "gpt-4"})
	if err != nil {
		log.Fatal(err)
	}
	for ev, err := range stream.Events() {
		if err != nil {
			log.Fatal(err)
		}
		if ev.IsFinal() {
			fmt.Printf("\n%d tokens\n", ev.Usage.TotalTokens)
		} else {
			fmt.Print(ev.Output)
		}
	}
}

func ExampleIsRateLimit() {
	client := plutos.NewClient("your-api-key", "production", plutos.WithMaxRetries(0))
	_, err := client.ListModels()
	var apiErr *plutos.APIError
	if errors.As(err, &apiErr) {
		if plutos.IsRateLimit(err) {
			fmt.Println("slow down; retry after", apiErr.RetryAfter)
		} else {
			fmt.Println(apiErr.Code, apiErr.Status, apiErr.RequestID)
		}
	}
}
