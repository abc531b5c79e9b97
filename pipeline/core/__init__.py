"""The bottom layer every other layer builds on: messages, queues, buffers, the wire protocol,
telemetry, states, errors, the typed contracts and the late policy. Imports only `pipeline.config`."""
