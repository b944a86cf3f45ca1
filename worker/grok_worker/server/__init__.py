"""The worker's gRPC server: validation, the servicer, lifecycle and `grok-worker serve`."""
