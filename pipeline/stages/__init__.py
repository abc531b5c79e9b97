"""The pipeline's stages, one thread each. Stage modules never import each other;
they share only `stage` and the bottom layer (messages, queues, telemetry, config)."""
