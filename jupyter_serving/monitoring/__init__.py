"""Monitoring: what the server observes of its endpoints: observer, events, metrics history,
Prometheus metrics."""
