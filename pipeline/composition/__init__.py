"""The composition root: builds the parts from the config, warms them up and wires the stages
into one pipeline."""
