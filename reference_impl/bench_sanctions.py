"""Sanctions screening throughput: names/s on one core against the shipped watch list.

`python -m reference_impl.bench_sanctions [--names N] [--seed S]`

Screens N names, a seeded half-and-half mix of spelling variants of listed names
(`name_variant`) and legitimate payers (`person_name`), through `SanctionsScreen.match` on one
thread, after a warm-up. The baseline, measured in the same run on the same names, is an exact
screen: `normalise` and one dict lookup per name, the least any name screen does. Prints names/s,
the ratio to the baseline, the target (5,000 names/s) and the ratio to it, and the match rate on
the variants and the false-match rate on the legitimate names. Exit code 1 when the target is
missed.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable

from reference_impl.compliance.sanctions import SanctionsScreen, load_watchlist, normalise
from reference_impl.compliance.sanctions_list import name_variant, person_name

TARGET_NAMES_PER_S = 5000.0
WARMUP = 500


def _names(screen: SanctionsScreen, n: int, seed: int) -> tuple[list[str], list[bool]]:
    """n names, each flagged True when it is a variant of a listed name."""
    rng = random.Random(seed)
    entries = screen.watchlist.entries
    names, listed = [], []
    for _ in range(n):
        variant = rng.random() < 0.5
        names.append(name_variant(rng.choice(entries).name, rng) if variant else person_name(rng))
        listed.append(variant)
    return names, listed


def _rate(screen_one: Callable[[str], object], names: list[str]) -> float:
    for name in names[:WARMUP]:
        screen_one(name)
    start = time.perf_counter()
    for name in names:
        screen_one(name)
    return len(names) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reference_impl.bench_sanctions", description=__doc__
    )
    parser.add_argument("--names", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    watchlist = load_watchlist()
    screen = SanctionsScreen(watchlist)
    built = time.perf_counter() - start
    names, listed = _names(screen, args.names, args.seed)
    exact = {normalise(n) for e in watchlist.entries for n in (e.name, *e.aliases)}

    baseline = _rate(lambda name: normalise(name) in exact, names)
    rate = _rate(screen.match, names)
    matched = [screen.match(name) is not None for name in names]
    variants = sum(listed)
    legit = len(names) - variants
    recall = sum(m for m, v in zip(matched, listed, strict=True) if v) / variants
    false = sum(m for m, v in zip(matched, listed, strict=True) if not v) / legit

    print(
        f"{os.cpu_count()} cores, 1 used; {len(watchlist.entries):,} listed entries, "
        f"index built in {built:.2f} s; {len(names):,} names (seed {args.seed}), "
        f"threshold {screen.threshold:.2f}"
    )
    print(f"{'screen':<36}{'names/s':>12}{'baseline':>12}{'ratio':>8}")
    print(f"{'fuzzy (SanctionsScreen.match)':<36}{rate:>12,.0f}{baseline:>12,.0f}"
          f"{rate / baseline:>8.2f}")  # fmt: skip
    print("baseline: an exact screen of the same names, normalise() and one dict lookup each")
    print(f"match rate on {variants:,} variants of listed names: {recall:.1%}")
    print(f"false-match rate on {legit:,} legitimate names:      {false:.1%}")
    print()
    ok = rate >= TARGET_NAMES_PER_S
    print(f"{'target':<40}{'names/s':>12}{'target':>12}{'ratio':>8}  verdict")
    print(f"{'fuzzy screen, one core':<40}{rate:>12,.0f}{TARGET_NAMES_PER_S:>12,.0f}"
          f"{rate / TARGET_NAMES_PER_S:>8.2f}  {'PASS' if ok else 'MISS'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
