"""What the model file is and says, shared by the backends that run it and the engine builders
that compile it: its signature and class names, the candidate head appended to its graph, and
the error for a model that cannot be used."""
