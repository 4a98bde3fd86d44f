package instrument_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/presenced/presenced/httpapi"
	"github.com/presenced/presenced/internal/instrument"
	"github.com/presenced/presenced/internal/testenv"
	"github.com/presenced/presenced/presence"
	"github.com/presenced/presenced/presence/memstore"
	"github.com/presenced/presenced/presence/redisstore"
	"github.com/presenced/presenced/store/sqlitestore"
)

// TestKeepsOptionalInterfaces: the Tracker finds Repairer on the Redis
// store and Publisher on the external reader through the wrappers, and
// finds neither where the wrapped value has none.
func TestKeepsOptionalInterfaces(t *testing.T) {
	srv := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	rs, err := redisstore.New(rdb, redisstore.Options{Prefix: "{inst}", OnlineKey: "{inst}online"})
	if err != nil {
		t.Fatal(err)
	}
	m := instrument.New()
	if _, ok := m.Presence(rs).(presence.Repairer); !ok {
		t.Error("the measured Redis store lost presence.Repairer")
	}
	if _, ok := m.Reader(redisstore.NewExternal(rdb, redisstore.ExternalOptions{})).(presence.Publisher); !ok {
		t.Error("the measured external reader lost presence.Publisher")
	}
	if _, ok := m.Presence(memstore.New(time.Minute, nil)).(presence.Repairer); ok {
		t.Error("the measured memory store claims presence.Repairer")
	}
	ds, err := sqlitestore.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ds.Close(context.Background()) })
	if _, ok := m.DataStore(ds).(httpapi.LastSeenLookup); !ok {
		t.Error("the measured SQLite store lost LastSeenOf (the who-is-online lookup)")
	}
}

// TestCounts: calls are counted by operation and result, batches by size,
// resyncs only for rewrites after the first.
func TestCounts(t *testing.T) {
	m := instrument.New()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.Collectors()...)
	s := m.Presence(memstore.New(time.Minute, nil))
	ctx := context.Background()
	if _, err := s.Sync(ctx, presence.Share{Node: "n", Seq: 1, Users: map[string]int64{"a": 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, presence.Batch{Node: "n", Seq: 2, Deltas: []presence.Delta{{User: "b", N: 1}, {User: "c", N: 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, presence.Batch{Node: "n", Seq: 9, Deltas: []presence.Delta{{User: "d", N: 1}}}); err == nil {
		t.Fatal("an out-of-order batch was applied")
	}
	if _, err := s.Sync(ctx, presence.Share{Node: "n", Seq: 3, Rejoin: true, Users: map[string]int64{"a": 1}}); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			key := f.GetName()
			for _, l := range mt.GetLabel() {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case mt.Counter != nil:
				got[key] = mt.Counter.GetValue()
			case mt.Histogram != nil:
				got[key] = float64(mt.Histogram.GetSampleCount())
			}
		}
	}
	for key, want := range map[string]float64{
		"presenced_presence_resyncs_total":                               1,
		"presenced_presence_store_requests_total op=apply result=ok":     1,
		"presenced_presence_store_requests_total op=apply result=resync": 1,
		"presenced_presence_store_requests_total op=sync result=ok":      2,
		"presenced_presence_batch_users":                                 2,
		"presenced_presence_store_duration_seconds op=apply":             2,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
}
