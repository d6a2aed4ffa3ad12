"""One seed drives everything: each part of the sim draws from its own named stream.

Streams are `random.Random` seeded from (seed, name), so adding a draw in one part (say, a new
fault) does not shift the numbers every other part sees, and the same seed and code replay the
same run. `random.Random` rather than numpy: the sim draws one scalar at a time, where the
stdlib generator is several times cheaper per draw.
"""

from __future__ import annotations

import random


class Streams:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._streams: dict[str, random.Random] = {}

    def get(self, name: str) -> random.Random:
        stream = self._streams.get(name)
        if stream is None:
            # A str seed is hashed with SHA-512 by `random.seed`: stable across runs and platforms.
            stream = self._streams[name] = random.Random(f"{self.seed}/{name}")
        return stream
