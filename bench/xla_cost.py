"""Bytes a compiled XLA computation reads and writes, from XLA's own cost analysis.

There is no portable hardware counter for memory traffic on these machines, so "bytes read per
token" comes from the compiler's cost model of the exact program that runs: `bytes accessed` is
split into operand bytes (`bytes accessed0{}`, `bytes accessed1{}`, ...: reads) and output bytes
(`bytes accessedout{}`: writes). It is a static model (loops and conditionals are estimated the way
XLA's HloCostAnalysis does), so the benchmarks report it next to the timed figures, not instead.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class XlaBytes:
    read: float
    written: float

    @property
    def total(self) -> float:
        return self.read + self.written


def xla_bytes(compiled: Any) -> XlaBytes:
    """Read/written bytes of a `jax.stages.Compiled` (from `jit(f).lower(...).compile()`)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):  # older JAX returned one dict per device program
        analysis = analysis[0] if analysis else {}
    if not analysis or "bytes accessed" not in analysis:
        raise RuntimeError("XLA returned no cost analysis for this computation on this backend")
    total = float(analysis["bytes accessed"])
    written = float(analysis.get("bytes accessedout{}", 0.0))
    return XlaBytes(read=total - written, written=written)


#: An instruction of the optimised HLO that produces a float32 array: name, dims, opcode, metadata.
_F32_RESULT = re.compile(
    r"^\s*(?:ROOT )?%?(?P<name>\S+) = f32\[(?P<dims>[0-9,]+)\]\S* (?P<op>[\w-]+)\((?P<rest>.*)$"
)
_OP_NAME = re.compile(r'op_name="(?P<op_name>[^"]*)"')
#: Opcodes that produce no new buffer.
_NO_BUFFER = frozenset({"parameter", "bitcast", "get-tuple-element", "tuple", "constant"})


def largest_float32_temporary(compiled: Any) -> tuple[int, str] | None:
    """(bytes, description) of the largest float32 array the compiled program computes, or None.

    A decode step should only need small float32 arrays (activations, logits); a large one is
    usually a weight widened or transposed before a dot, which costs memory traffic per token.
    """
    best: tuple[int, str] | None = None
    for line in compiled.as_text().splitlines():
        match = _F32_RESULT.match(line)
        if not match or match.group("op") in _NO_BUFFER:
            continue
        size = 4 * math.prod(int(d) for d in match.group("dims").split(","))
        if best is None or size > best[0]:
            origin = _OP_NAME.search(match.group("rest"))
            where = origin.group("op_name") if origin else match.group("name")
            best = (size, f"f32[{match.group('dims')}] from {match.group('op')} ({where})")
    return best
