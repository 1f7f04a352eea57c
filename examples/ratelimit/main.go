// Command ratelimit shows the user guide's use case "Rate limiting
// external API calls": the external API allows one request at a time per
// endpoint, so every call runs under the lock "api/<endpoint>", waiting up
// to 30 s for it, in every process.
//
// -api is the API's base URL. Without it the program starts a stand-in
// API of its own (which can then only see this process's requests); the
// test starts one that all processes share and that counts the requests in
// flight per endpoint.
//
//	go run ./ratelimit -backend pg -workers 8
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/examples/internal/exampleenv"
)

func main() {
	cfg := exampleenv.Flags(flag.CommandLine)
	api := flag.String("api", "", "base URL of the API; empty starts a stand-in API in this process")
	endpoints := flag.String("endpoints", "users,orders,invoices", "comma-separated endpoints")
	requests := flag.Int("requests", 20, "requests each worker makes")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	env, err := cfg.Open(ctx)
	if err != nil {
		exampleenv.Fatal("ratelimit", err)
	}
	defer env.Close()
	var standIn *countingAPI
	if *api == "" {
		standIn = newCountingAPI(5 * time.Millisecond)
		srv := httptest.NewServer(standIn)
		defer srv.Close()
		*api = srv.URL
	}
	c := &apiClient{env: env, base: *api, http: &http.Client{Timeout: 10 * time.Second}}
	names := strings.Split(*endpoints, ",")
	if err := env.WaitStart(ctx); err != nil {
		exampleenv.Fatal("ratelimit", err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, env.Workers)
	for w := range env.Workers {
		wg.Go(func() {
			for i := range *requests {
				if _, err := c.fetchData(ctx, names[(w+i)%len(names)]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		exampleenv.Fatal("ratelimit", err)
	}
	kv := []any{"requests", c.done.Load()}
	if standIn != nil {
		most, _ := standIn.stats()
		for _, n := range names {
			kv = append(kv, "max_in_flight_"+n, most[n])
		}
	}
	env.Summary("ratelimit", kv...)
}

type apiClient struct {
	env  *exampleenv.Env
	base string
	http *http.Client
	done atomic.Int64
}

// fetchData is the guide's ExternalApiClient#fetch_data: one request at a
// time per endpoint, across all processes.
func (c *apiClient) fetchData(ctx context.Context, endpoint string) (body []byte, err error) {
	err = c.env.Locker.WithLock(ctx, "api/"+endpoint, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/"+endpoint, nil)
		if err != nil {
			return err
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if body, err = io.ReadAll(resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", endpoint, resp.Status)
		}
		return nil
	}, kannuki.Timeout(30*time.Second))
	if err != nil {
		return nil, err
	}
	c.done.Add(1)
	return body, nil
}
