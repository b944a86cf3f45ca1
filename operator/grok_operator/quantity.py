"""Parse Kubernetes resource quantities ("80Gi", "24G", "81920Mi") into whole bytes, and print
byte counts for people ("39.6 GiB").

Only the suffixes that make sense for memory are accepted; the CRD schema enforces the same
pattern, so a bad value normally never reaches this code.
"""

from __future__ import annotations

import re
from decimal import Decimal

_SUFFIXES = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


def parse_bytes(text: str, *, field: str = "quantity") -> int:
    """Bytes in a quantity such as "80Gi"; ValueError names `field` and the accepted forms."""
    match = _QUANTITY.match(text.strip())
    if match is None:
        raise ValueError(f"{field}: {text!r} is not a memory quantity; write e.g. 80Gi, 24G or 81920Mi")
    number, suffix = match.group(1), match.group(2) or ""
    return int(Decimal(number) * _SUFFIXES[suffix])


def human_bytes(count: int) -> str:
    """A byte count in GiB (or MiB below one GiB), one decimal."""
    if count >= 2**30:
        return f"{count / 2**30:.1f} GiB"
    return f"{count / 2**20:.1f} MiB"
