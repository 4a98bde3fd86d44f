package httpapi

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Gauge is one number exported on /metrics, read when scraped.
type Gauge struct {
	Name, Help string
	Value      func() float64
}

// handleMetrics serves the gauges plus Go runtime and process metrics in
// the Prometheus text format, from a registry of its own.
func handleMetrics(gauges []Gauge) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, g := range gauges {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: g.Name, Help: g.Help}, g.Value))
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
