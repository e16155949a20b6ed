// The API reference's Go example, as written there (gofmt-ed). Run it against a server with
//
//	PLUTOS_BASE_URL=http://localhost:3000/v1 go run ./examples/quickstart
//
// after putting a real key and model in place of the placeholders; live_test.go does exactly that.
package main

import (
	"fmt"
	"log"

	"github.com/plutos-ai/go-sdk"
)

func main() {
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
