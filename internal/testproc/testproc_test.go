package testproc

import (
	"fmt"
	"regexp"
	"sync"
	"testing"
)

func TestRunPattern(t *testing.T) {
	pat := RunPattern("TestX/sub.case/2")
	if want := `^TestX$/^sub\.case$/^2$`; pat != want {
		t.Fatalf("RunPattern = %q, want %q", pat, want)
	}
	first := regexp.MustCompile(`^TestX$`)
	if first.MatchString("TestXY") {
		t.Fatal("the pattern's first element matches a longer test name")
	}
}

func TestBufferConcurrent(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				fmt.Fprint(&b, i)
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if n := len(b.String()); n != 800 {
		t.Fatalf("%d bytes written, want 800", n)
	}
}
