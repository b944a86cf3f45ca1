"""Write a release-format checkpoint with whatever numpy and ml_dtypes this interpreter has.

Standalone on purpose (numpy and ml_dtypes only, no project import): tests run it inside side
virtualenvs holding the stacks the Grok-1 release era used (numpy 1.26 with ml_dtypes 0.2-0.5),
and numpy 2 with ml_dtypes 0.6, so the files carry those libraries' real pickles.

    python release_era_writer.py SPEC.json OUT_DIR {__main__|model}

SPEC.json: {"tensors": [[index, shape, scales_shape or null], ...]}. Contents are a fixed integer
formula of the element index (see `values`), the same in every numpy version, so the reading test
can regenerate them. Each file is `pickle.dump(value, f, protocol=4)`, as the release wrote them,
with the class defined in `__main__` (or in a module named `model`).
"""

import json
import os
import pickle
import sys
import types
from dataclasses import dataclass

import ml_dtypes
import numpy as np


@dataclass
class QuantizedWeight8bit:
    weight: np.ndarray
    scales: np.ndarray


def values(index, shape, kind):
    """int8 weights, bfloat16 scales or float32 values: exact in their dtype in every version."""
    n = int(np.prod(shape, dtype=np.int64))
    i = np.arange(n, dtype=np.int64) * 2654435761 + index * 97
    if kind == "int8":
        return ((i % 251) - 125).astype(np.int8).reshape(shape)
    if kind == "bfloat16":  # small multiples of 1/64: exact in bfloat16
        return (((i % 31) + 1).astype(np.float32) / 64).astype(ml_dtypes.bfloat16).reshape(shape)
    return (((i % 2001) - 1000).astype(np.float32) / 1024).reshape(shape)


def main():
    spec_path, out, module = sys.argv[1:4]
    if module == "model":  # as if the class had been imported from the release's model.py
        mod = types.ModuleType("model")
        QuantizedWeight8bit.__module__ = "model"
        mod.QuantizedWeight8bit = QuantizedWeight8bit
        sys.modules["model"] = mod
    directory = os.path.join(out, "ckpt-0")
    os.makedirs(directory, exist_ok=True)
    with open(spec_path) as f:
        tensors = json.load(f)["tensors"]
    for index, shape, scales_shape in tensors:
        if scales_shape is None:
            value = values(index, shape, "float32")
        else:
            weight = values(index, shape, "int8")
            value = QuantizedWeight8bit(weight=weight, scales=values(index, scales_shape, "bfloat16"))
        with open(os.path.join(directory, f"tensor{index:05d}_000"), "wb") as f:
            pickle.dump(value, f, protocol=4)
    print(np.__version__, ml_dtypes.__version__)


if __name__ == "__main__":
    main()
