"""The parts the stages run: sources, preprocessing, backends, decoding, publishing, rules, the
failed-part archive and annotation, the engine builders and the GPU layer. Imports only
`pipeline.core` and `pipeline.config`."""
