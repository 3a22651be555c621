"""The mapping-type pair table (the paper's Table 3, DESIGN §2.2) as data: for a producer followed by a consumer,
the fused block's mapping type and whether to fuse (green: always, yellow: if profiling says it pays, red: never).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import reduce
from typing import Iterable

from ..ops import MappingType


class Verdict(enum.Enum):
    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


@dataclass(frozen=True)
class Cell:
    fused: MappingType | None          # None for red cells: there is no fused operator
    verdict: Verdict


_O, _R, _S, _OM, _MM = (MappingType.ONE_TO_ONE, MappingType.REORGANIZE, MappingType.SHUFFLE,
                        MappingType.ONE_TO_MANY, MappingType.MANY_TO_MANY)
_G, _Y = Verdict.GREEN, Verdict.YELLOW
_RED = Cell(None, Verdict.RED)

# rows: the first (producer) operator; columns: the second (consumer) operator.
TABLE: dict[MappingType, dict[MappingType, Cell]] = {
    _O: {_O: Cell(_O, _G), _OM: Cell(_OM, _G), _MM: Cell(_MM, _G), _R: Cell(_R, _G), _S: Cell(_S, _G)},
    _OM: {_O: Cell(_OM, _G), _OM: Cell(_OM, _Y), _MM: _RED, _R: Cell(_OM, _Y), _S: Cell(_OM, _Y)},
    _MM: {_O: Cell(_MM, _G), _OM: Cell(_MM, _Y), _MM: _RED, _R: Cell(_MM, _Y), _S: Cell(_MM, _Y)},
    _R: {_O: Cell(_R, _G), _OM: Cell(_OM, _Y), _MM: Cell(_MM, _Y), _R: Cell(_R, _G), _S: Cell(_R, _G)},
    _S: {_O: Cell(_S, _G), _OM: Cell(_OM, _Y), _MM: Cell(_MM, _Y), _R: Cell(_R, _G), _S: Cell(_S, _G)},
}


def pair(first: MappingType, second: MappingType) -> Cell:
    """The table's cell for `first` followed by `second`."""
    return TABLE[first][second]


def chain_type(types: Iterable[MappingType]) -> MappingType | None:
    """The mapping type of a fused chain, operators in data-flow order: the table applied pairwise from the
    left, so the operator with the highest transformation impedance decides (Many-to-Many over One-to-Many over
    Reorganize/Shuffle over One-to-One). None if the chain contains a red pair."""
    def step(acc: MappingType | None, nxt: MappingType) -> MappingType | None:
        return None if acc is None else TABLE[acc][nxt].fused
    types = list(types)
    return reduce(step, types[1:], types[0]) if types else None
