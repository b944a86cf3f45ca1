"""The inference engine: the engine interface, sampling, text handling, continuous batching.

Modules: `api` (the Engine interface), `mock` (a hand-checkable engine), `model_engine` (the real
model), `sampling`, `text` (detokenize + stop strings), `requests`, `scheduler` (continuous
batching loop), `multihost` (step broadcast to followers).
"""
