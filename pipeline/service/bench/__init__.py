"""`pipeline bench`: the real pipeline measured side by side with the alternatives.

Owns measuring, never the product's behaviour: it builds the real pipeline from a config
(`runner`), the naive one-thread loop (`naive`) and Ultralytics' streaming predict
(`ultralytics_loop`) over the same pre-rendered frames (`frames`) and model, records
every published verdict (`recording`), sweeps the infer stage's `max_batch`
(`batching`), and turns the records into a table, JSON and a PNG (`report`, `plot`).
`suite` runs what the command asked for in one process.
"""
