"""Entry points and the service around a pipeline: the CLI and its commands, the foreground
run, the daemon, bench, eval, soak, convert, the subscriber and the fieldbus gateway."""
