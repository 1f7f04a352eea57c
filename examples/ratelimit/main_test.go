package main

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kannuki-go/kannuki/examples/internal/exampletest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const procs, workers, requests = 2, 4, 15

var endpoints = []string{"users", "orders", "invoices"}

// TestOneRequestPerEndpoint runs 2 processes of 4 workers against one API
// started here, which counts the requests in flight per endpoint: the
// most at once must be exactly 1 for every endpoint. Without locks
// (-backend none) it must exceed 1.
func TestOneRequestPerEndpoint(t *testing.T) {
	bin := exampletest.Build(t)
	for _, tg := range exampletest.All() {
		t.Run(tg.Name, func(t *testing.T) {
			if err := run(t, bin, tg); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("none", func(t *testing.T) {
		err := run(t, bin, exampletest.None())
		if err == nil {
			t.Fatal("without locks the check found nothing wrong: it could not catch a broken lock")
		}
		t.Logf("without locks, as expected: %v", err)
	})
}

// run runs the processes against a fresh counting API and checks it.
func run(t *testing.T, bin string, tg exampletest.Target) error {
	api := newCountingAPI(5 * time.Millisecond)
	srv := httptest.NewServer(api)
	defer srv.Close()
	e := exampletest.Open(t, tg)
	ps := e.Start(bin, procs, "-api", srv.URL, "-endpoints", strings.Join(endpoints, ","),
		"-workers", fmt.Sprint(workers), "-requests", fmt.Sprint(requests))

	if n := exampletest.Sum(t, ps, "requests"); n != procs*workers*requests {
		t.Fatalf("processes report %d requests, want %d", n, procs*workers*requests)
	}
	most, total := api.stats()
	sum := 0
	for _, ep := range endpoints {
		sum += total[ep]
		if most[ep] != 1 {
			return fmt.Errorf("endpoint %s: up to %d requests in flight at once, want 1 (max per endpoint %v)", ep, most[ep], most)
		}
	}
	if sum != procs*workers*requests {
		t.Fatalf("the API saw %d requests, want %d", sum, procs*workers*requests)
	}
	return nil
}
