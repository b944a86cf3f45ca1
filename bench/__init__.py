"""Benchmarks for grok-operator: how close each part runs to its limit, measured side by side.

Every figure is a ratio of a measured value against a limit or baseline measured in the same
process and run (memory-copy bandwidth, plain file reading, the engine's own step time, ...),
because the machines this runs on are shared and noisy: absolute times drift, ratios within one
run hold.

Data flow: `python -m bench NAME` (see `bench.__main__`) looks NAME up in `bench.registry`, calls
the benchmark module's `run(options)`, which returns a `bench.report.Result` (table rows plus
`Figure`s); `bench.report.emit` prints a human table and then one JSON line per figure.
Benchmarks never fail on a slow machine: they only fail when the thing measured breaks.
"""
