"""Vectorised helpers of the audit: identifiers as dense integer codes, first occurrences,
row lookups and row-wise text, so every check is a numpy pass over whole tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def cat(*parts: Any) -> Any:
    """Row-wise string concatenation of literals and per-row values, by position (never by
    index label); only ever run on violating rows, so plain object arrays are fast enough."""
    out: Any = ""
    for part in parts:
        out = out + (part if isinstance(part, str) else np.asarray(part).astype(str).astype(object))
    return out


# Identifiers are compared as dense integer codes: one factorisation per kind of id, shared by
# every table that names it, then numpy lookups. Comparing Arrow strings directly (isin, merge,
# get_indexer) costs seconds per million rows; this costs milliseconds.


def encode(*columns: pd.Series) -> tuple[list[np.ndarray], np.ndarray]:
    """Codes for several string columns at once (equal strings, equal codes), and the strings."""
    both = pd.concat([pd.Series(c.array) for c in columns], ignore_index=True)
    codes, uniques = pd.factorize(both)
    split = np.split(codes.astype(np.int64), np.cumsum([len(c) for c in columns])[:-1])
    return split, np.asarray(uniques, dtype=object)


def encode_scoped(*pairs: tuple[np.ndarray, pd.Series]) -> tuple[list[np.ndarray], int]:
    """Codes for (tenant code, id) pairs: ids are unique per tenant, not across tenants."""
    ids, uniques = encode(*(column for _, column in pairs))
    scoped = [t * len(uniques) + i for (t, _), i in zip(pairs, ids, strict=True)]
    codes, seen = pd.factorize(np.concatenate(scoped))
    return np.split(codes, np.cumsum([len(c) for c in scoped])[:-1]), len(seen)


def first(codes: np.ndarray) -> np.ndarray:
    """True at the first occurrence of each code, in row order."""
    mask = np.zeros(len(codes), dtype=bool)
    mask[np.unique(codes, return_index=True)[1]] = True
    return mask


def first_where(mask: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """`mask`, kept only at the first masked row of each code."""
    return np.asarray(mask & first(np.where(mask, codes, -1 - np.arange(len(codes)))))


def row_of(codes: np.ndarray, n: int, where: np.ndarray | None = None) -> np.ndarray:
    """For each of `n` codes, the first row (among the rows `where` is True) holding it, or -1."""
    idx = np.arange(len(codes)) if where is None else np.flatnonzero(where)
    firsts = idx[first(codes[idx])]
    rows = np.full(n, -1, dtype=np.int64)
    rows[codes[firsts]] = firsts
    return rows


def pick(values: Any, rows: np.ndarray, fill: Any) -> np.ndarray:
    """values[rows], with `fill` where rows is -1 (safe even when `values` is empty)."""
    array = np.asarray(values)
    return np.asarray(np.concatenate([array, np.array([fill], dtype=array.dtype)])[rows])


def member(codes: np.ndarray, pool: np.ndarray, n: int) -> np.ndarray:
    seen = np.zeros(n, dtype=bool)
    seen[pool] = True
    return np.asarray(seen[codes])


def is_(column: pd.Series, *values: str) -> np.ndarray:
    return np.asarray(column.isin(values).to_numpy(dtype=bool))


def text(column: pd.Series) -> pa.ChunkedArray:
    values = pc.cast(pa.array(column), pa.large_string())
    return values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])
