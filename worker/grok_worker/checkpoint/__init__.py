"""Release-format Grok-1 checkpoints: a safe, parallel, sharding-aware reader and a writer.

- `load_checkpoint(path, cfg, mesh=None, progress=None, quantization="int8") -> Params`
- `save_checkpoint(params, cfg, path, quantization="int8")`; `write_random_checkpoint(cfg, path, seed)`
- `CheckpointFormatError`: every problem with a checkpoint file, naming the file and tensor.
The byte format lives in `release_format`; `make` is the `grok-worker make-checkpoint` command.
"""

from grok_worker.checkpoint.loader import checkpoint_dir, load_checkpoint
from grok_worker.checkpoint.release_format import CheckpointFormatError, QuantizedWeight8bit, read_leaf
from grok_worker.checkpoint.writer import save_checkpoint, write_random_checkpoint

__all__ = [
    "CheckpointFormatError",
    "QuantizedWeight8bit",
    "checkpoint_dir",
    "load_checkpoint",
    "read_leaf",
    "save_checkpoint",
    "write_random_checkpoint",
]
