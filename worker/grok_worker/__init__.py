"""grok_worker: the Grok-1 model in JAX, release-format checkpoints, the engine and the gRPC server.

Importing this package is cheap: submodules load JAX only when they need it, so the operator can
import `grok_worker.contract` without pulling in JAX.
"""
