package httpapi

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Gauge is one number exported on /metrics, read when scraped. Counter
// marks a number that only grows (exported as a Prometheus counter, whose
// Name must end in _total).
type Gauge struct {
	Name, Help string
	Value      func() float64
	Counter    bool
	// Labels are constant labels: several Gauges of one Name with
	// different Labels (the same label names) make one labelled metric.
	Labels map[string]string
}

// handleMetrics serves the gauges, the collectors (histograms and
// labelled counters kept by the code that measures) and Go runtime and
// process metrics in the Prometheus text format, from a registry of its
// own. Gauges of one Name are gathered into one metric family.
func handleMetrics(gauges []Gauge, extra []prometheus.Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, g := range gauges {
		if g.Counter {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: g.Name, Help: g.Help, ConstLabels: g.Labels}, g.Value))
			continue
		}
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: g.Name, Help: g.Help, ConstLabels: g.Labels}, g.Value))
	}
	reg.MustRegister(extra...)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
