package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// countingAPI stands for the external API: it answers every request after
// latency and counts, per endpoint, the requests in flight, so that the
// example (and its test) can see whether two ever ran at once.
type countingAPI struct {
	latency time.Duration

	mu      sync.Mutex
	running map[string]int
	max     map[string]int // most requests in flight at once
	total   map[string]int
}

func newCountingAPI(latency time.Duration) *countingAPI {
	return &countingAPI{latency: latency, running: map[string]int{}, max: map[string]int{}, total: map[string]int{}}
}

func (a *countingAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	endpoint := strings.TrimPrefix(r.URL.Path, "/")
	a.mu.Lock()
	a.running[endpoint]++
	a.total[endpoint]++
	a.max[endpoint] = max(a.max[endpoint], a.running[endpoint])
	a.mu.Unlock()

	time.Sleep(a.latency)

	a.mu.Lock()
	a.running[endpoint]--
	a.mu.Unlock()
	fmt.Fprintf(w, "data of %s\n", endpoint)
}

// stats returns the most requests in flight at once and the number of
// requests, per endpoint.
func (a *countingAPI) stats() (most, total map[string]int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	most, total = map[string]int{}, map[string]int{}
	for k, v := range a.max {
		most[k] = v
	}
	for k, v := range a.total {
		total[k] = v
	}
	return most, total
}
