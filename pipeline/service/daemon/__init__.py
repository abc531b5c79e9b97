"""What turns `pipeline run` into a service: systemd notification and the progress
watchdog, health and readiness, Prometheus metrics over HTTP, and rule reload on SIGHUP.

Sits between the runner (which drives it from its main-thread loop) and the composition
root (whose telemetry it reads). Nothing here runs on the hot path except the metrics'
verdict sink that feeds the latency histograms, called by the publish thread after each
verdict has been sent.
"""
