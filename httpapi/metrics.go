package httpapi

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Gauge is one number exported on /metrics, read when scraped. Counter
// marks a number that only grows (exported as a Prometheus counter).
type Gauge struct {
	Name, Help string
	Value      func() float64
	Counter    bool
	// Labels are constant labels: several Gauges of one Name with
	// different Labels make one labelled metric.
	Labels map[string]string
}

// handleMetrics serves the gauges plus Go runtime and process metrics in
// the Prometheus text format, from a registry of its own.
func handleMetrics(gauges []Gauge) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, g := range gauges {
		if g.Counter {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: g.Name, Help: g.Help, ConstLabels: g.Labels}, g.Value))
			continue
		}
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: g.Name, Help: g.Help, ConstLabels: g.Labels}, g.Value))
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
