package bench

import (
	"context"
	"fmt"
	"time"
)

// Plan sets how long every part of a run takes.
type Plan struct {
	Rounds     int           // uncontended rounds
	Block      time.Duration // uncontended block length
	Pairs      int           // rounds of the uncontended pairs with the floor
	PairBlock  int           // cycles per block of a pair
	Waiters    []int         // handoff waiter counts
	HRounds    int           // handoff rounds
	Handoff    HandoffPlan
	Census     CensusPlan // few waiters: long enough to see a keepalive
	CensusMany CensusPlan // many waiters
	Few, Many  int        // census waiters
	ManyPool   int        // pool of the many-waiters census (and of the heap test)
	RedisWin   time.Duration
	TRounds    int
	Throughput ThroughputPlan
	Goroutines []int // throughput goroutine counts
	HotKeys    int
	MaxPool    int // pool of the throughput cases: min(goroutines, MaxPool)
	Scale      int // goroutines of the scale test
	ScalePool  int
	ScaleWait  time.Duration
	HeapLocks  int // locks held in the in-process heap test
}

// FullPlan is the plan of the published run: about seven minutes on two
// cores.
func FullPlan() Plan {
	return Plan{
		Rounds: 50, Block: 75 * time.Millisecond,
		Pairs: 100, PairBlock: 100,
		Waiters: []int{2, 8, 64}, HRounds: 3,
		Handoff:    HandoffPlan{Hold: 5 * time.Millisecond, Want: 120, WantSlow: 40, Limit: 20 * time.Second, DrainWait: 10 * time.Second},
		Census:     CensusPlan{Window: 5500 * time.Millisecond, Every: 100 * time.Millisecond, Settle: 5 * time.Second},
		CensusMany: CensusPlan{Window: 1500 * time.Millisecond, Every: 100 * time.Millisecond, Settle: 10 * time.Second},
		Few:        8, Many: 1000, ManyPool: 50,
		RedisWin: 2 * time.Second,
		TRounds:  3, Throughput: ThroughputPlan{Warm: 300 * time.Millisecond, Measure: 1500 * time.Millisecond, Every: 50 * time.Millisecond},
		Goroutines: []int{1, 16, 256}, HotKeys: 10, MaxPool: 50,
		Scale: 10_000, ScalePool: 16, ScaleWait: 20 * time.Second,
		HeapLocks: 1000,
	}
}

// QuickPlan runs every part briefly: a smoke test of seconds for CI. Its
// figures are too few to mean much.
func QuickPlan() Plan {
	return Plan{
		Rounds: 2, Block: 20 * time.Millisecond,
		Pairs: 4, PairBlock: 5,
		Waiters: []int{2, 8}, HRounds: 1,
		Handoff:    HandoffPlan{Hold: 2 * time.Millisecond, Want: 10, WantSlow: 3, Limit: 3 * time.Second, DrainWait: 5 * time.Second},
		Census:     CensusPlan{Window: 300 * time.Millisecond, Every: 50 * time.Millisecond, Settle: 3 * time.Second},
		CensusMany: CensusPlan{Window: 300 * time.Millisecond, Every: 50 * time.Millisecond, Settle: 3 * time.Second},
		Few:        8, Many: 100, ManyPool: 20,
		RedisWin: 300 * time.Millisecond,
		TRounds:  1, Throughput: ThroughputPlan{Warm: 50 * time.Millisecond, Measure: 200 * time.Millisecond, Every: 50 * time.Millisecond},
		Goroutines: []int{1, 16, 256}, HotKeys: 10, MaxPool: 20,
		Scale: 1000, ScalePool: 16, ScaleWait: 500 * time.Millisecond,
		HeapLocks: 1000,
	}
}

// Report is everything one run measured.
type Report struct {
	Quick          bool
	Plan           Plan
	Started, Ended time.Time
	Machine        Machine
	Command        string
	Unavailable    map[string]error // families that could not be opened
	Uncontended    []*CycleStats
	Paired         []*PairStats
	WatchCost      []*PairStats // Kannuki: the watch on; Floor: NoWatch
	Handoff        []*HandoffStats
	Census         []*WaitCensus
	RedisCensus    []*RedisCensus
	Throughput     []*ThroughputStats
	Scale          []*ScaleStats
	Heap           []*HeapStats
	HeapDBLocks    int
}

// Run measures everything in plan and returns the report. progress, if
// not nil, hears what is being measured.
func Run(ctx context.Context, env Env, plan Plan, quick bool, progress func(string)) *Report {
	if progress == nil {
		progress = func(string) {}
	}
	r := &Report{Quick: quick, Plan: plan, Started: time.Now(), Unavailable: map[string]error{}}
	progress("machine and server versions")
	r.Machine = DescribeMachine(ctx, env)
	r.Machine.LoadStart = LoadAvg()
	r.Machine.PGOthersStart = OtherPGSessions(ctx, env)

	fams := OpenFamilies(ctx, env)
	for _, f := range fams {
		if f.Err != nil {
			r.Unavailable[f.Name] = f.Err
			progress(fmt.Sprintf("unavailable: %s: %v", f.Name, f.Err))
		}
	}
	r.Uncontended = RunUncontended(ctx, fams, plan.Rounds, plan.Block, progress)
	r.Paired = RunPaired(ctx, fams, plan.Pairs, plan.PairBlock, progress)
	for _, f := range fams {
		f.Close()
	}
	var down map[string]error
	r.WatchCost, down = RunWatchCost(ctx, env, plan.Pairs, plan.PairBlock, progress)
	for name, err := range down {
		r.Unavailable["watch cost: "+name] = err
	}

	r.Handoff = RunHandoff(ctx, env, Contenders(), plan.Waiters, plan.HRounds, plan.Handoff, progress)

	for _, kind := range []CensusKind{CensusPgxv5, CensusPG, CensusMySQL} {
		progress(fmt.Sprintf("census: %s, %d waiters", kind, plan.Few))
		r.Census = append(r.Census, RunCensus(ctx, env, kind, plan.Few, plan.Few+1, true, plan.Census))
	}
	for _, queue := range []bool{false, true} {
		for _, kind := range []CensusKind{CensusPgxv5, CensusPG, CensusMySQL} {
			for _, n := range []int{plan.Few, plan.Many} {
				if n == plan.Few && queue {
					continue // above
				}
				progress(fmt.Sprintf("census: %s, %d waiters, local queue %v", kind, n, queue))
				r.Census = append(r.Census, RunCensus(ctx, env, kind, n, min(n+1, plan.ManyPool), queue, plan.CensusMany))
			}
		}
	}
	for _, c := range Contenders() {
		if c.Kind != KindPeer {
			continue
		}
		progress("redis census: " + c.Name)
		r.RedisCensus = append(r.RedisCensus, RunRedisCensus(ctx, env, c, plan.Few, plan.RedisWin))
	}

	var cases []ThroughputCase
	for _, g := range plan.Goroutines {
		// The floor at each pool size: as many goroutines as connections.
		n := min(g, plan.MaxPool)
		cases = append(cases, ThroughputCase{Backend: ThroughputFloor, Goroutines: n, PoolSize: n})
	}
	for _, kind := range []CensusKind{CensusPgxv5, CensusPG} {
		for _, hot := range []int{0, plan.HotKeys, -plan.HotKeys} {
			for _, g := range plan.Goroutines {
				// -HotKeys: the hot keys again, with the local queue off.
				cases = append(cases, ThroughputCase{Backend: kind, Goroutines: g, HotKeys: max(hot, -hot), PoolSize: min(g, plan.MaxPool), NoLocalQueue: hot < 0})
			}
		}
	}
	r.Throughput = RunThroughput(ctx, env, cases, plan.TRounds, plan.Throughput, progress)

	for _, c := range []struct {
		kind        CensusKind
		noMultiplex bool
	}{{CensusPgxv5, false}, {CensusPgxv5, true}, {CensusPG, false}} {
		progress(fmt.Sprintf("scale: %s, multiplexing off %v, %d goroutines", c.kind, c.noMultiplex, plan.Scale))
		r.Scale = append(r.Scale, RunScale(ctx, env, c.kind, c.noMultiplex, plan.Scale, plan.ScalePool, plan.ScaleWait))
	}

	progress("heap per held lock")
	r.HeapDBLocks = plan.ManyPool
	r.Heap = RunHeap(ctx, env, plan.HeapLocks, plan.ManyPool)

	r.Machine.LoadEnd = LoadAvg()
	r.Machine.PGOthersEnd = OtherPGSessions(ctx, env)
	r.Ended = time.Now()
	return r
}
