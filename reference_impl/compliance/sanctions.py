"""Sanctions screening: a payer's name against a watch list, fuzzy, fast enough to run per payment.

A name is normalised (any script transliterated to ASCII, case, accents, punctuation and
legal-form words dropped), its tokens sorted so word order does not matter, and scored against
every listed name and alias that shares a blocking key with it (a consonant skeleton or a
four-letter prefix of one of its tokens), never against the whole list. The score is a weighted
mean of rapidfuzz's token-sort ratio and Jaro-Winkler similarity on the token-sorted forms;
docs/compliance.md gives the thresholds and the match rates they were chosen from.

Pure apart from `load_watchlist`, which reads the file and hands its text to `parse_watchlist`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from anyascii import anyascii
from rapidfuzz import fuzz, process
from rapidfuzz.distance import JaroWinkler

from reference_impl.core.checks import APPROVE, Decision
from reference_impl.core.errors import InvalidInput

COLUMNS = ("id", "schema", "name", "aliases", "countries", "program", "dataset")
SCHEMAS = ("Person", "Organization")
LEGAL_FORMS = frozenset(
    "ltd limited llc gmbh sa sarl jsc ooo oao pjsc fze fzco llp inc corp corporation co company "
    "plc ag bv nv spa srl ao zao pte pty kg se tov".split()
)
"""Legal-form words, dropped: "Volkov Trading LLC" and "Volkov Trading Ltd" are one name."""
INITIAL_WEIGHT = 0.95
"""A match through a listed person's name with the first given name as an initial ("I. Petrov")
scores at most this: an initial is weaker evidence, so it can reach review, never reject."""
JW_WEIGHT = 0.3
"""The score is (1 - JW_WEIGHT) * token-sort ratio + JW_WEIGHT * Jaro-Winkler similarity.

Jaro-Winkler forgives transliteration (Mohammed/Muhammad) more than the ratio does, and
forgives two names that share only a long surname too: at 0.5 the legitimate names' false
matches rose from 2.0% to 3.0% for the same recall (docs/compliance.md)."""

_DROPPED = re.compile(r"['.]")  # O'Brien -> obrien, S.A. -> sa, I. -> i
_SEPARATORS = re.compile(r"[^a-z0-9]+")
_ARTICLES = frozenset(("al", "el"))  # Al-Rashid, Al Rashid, AlRashid, El-Rashid: one token
_SKELETON_RULES = (
    ("shch", "s"), ("sch", "s"), ("sh", "s"), ("zh", "s"), ("kh", "h"), ("ch", "h"), ("ph", "f"),
    ("ck", "k"), ("x", "ks"), ("q", "k"), ("c", "k"), ("w", "v"), ("z", "s"), ("f", "v"),
    ("j", "i"), ("tz", "s"), ("ts", "s"),
)  # fmt: skip
_VOWELS = "aeiouy"


class WatchListError(InvalidInput):
    """The watch list file is missing or malformed; the message names the file, line and rule."""


@dataclass(frozen=True, slots=True)
class WatchListEntry:
    id: str
    schema: Literal["Person", "Organization"]
    name: str
    aliases: tuple[str, ...]
    countries: tuple[str, ...]
    program: str
    dataset: str


@dataclass(frozen=True, slots=True)
class WatchList:
    source: str
    entries: tuple[WatchListEntry, ...]


@dataclass(frozen=True, slots=True)
class Match:
    entry: WatchListEntry
    matched_name: str
    """The listed name or alias that scored best, as the list spells it."""
    score: float


def normalise(name: str) -> str:
    """The comparable form of a name: ASCII, casefolded, no punctuation or legal-form words.

    >>> normalise("Иван  Петров")
    'ivan petrov'
    >>> normalise("Al-Rashid Trading L.L.C.")
    'alrashid trading'
    """
    return " ".join(_tokens(name))


def _tokens(name: str) -> list[str]:
    text = _DROPPED.sub("", anyascii(name).casefold())
    words = [w for w in _SEPARATORS.sub(" ", text).split() if w not in LEGAL_FORMS]
    out: list[str] = []
    i = 0
    while i < len(words):
        if words[i] in _ARTICLES and i + 1 < len(words):
            out.append("al" + words[i + 1])
            i += 2
        else:
            out.append(words[i])
            i += 1
    return out


def _skeleton(token: str) -> str:
    """A spelling-tolerant key: Mohammed/Muhammad/Mohamed -> mhmd, Petrov/Petroff -> ptrv.

    A leading vowel (or y) becomes "a" (Omar/Umar, Yelena/Elena), later vowels go, letter
    clusters that transliterations disagree on collapse, and doubled letters count once.
    """
    for cluster, key in _SKELETON_RULES:
        token = token.replace(cluster, key)
    head = "a" if token[0] in _VOWELS else token[0]
    out = [head]
    for c in token[1:]:
        if c not in _VOWELS and c != out[-1]:
            out.append(c)
    return "".join(out)


def _keys(tokens: Iterable[str]) -> set[str]:
    """Blocking keys: each token's skeleton and four-letter prefix; initials carry none."""
    keys = set()
    for t in tokens:
        if len(t) > 1:
            keys.add(_skeleton(t))
            keys.add("^" + t[:4])
    return keys


class SanctionsScreen:
    """Screens names against one watch list; build once (it indexes the list), call per payment.

    `decide` answers "review" from `threshold`, "reject" from `reject_at`, "approve" below.
    """

    def __init__(
        self, watchlist: WatchList, threshold: float = 0.90, reject_at: float = 0.97
    ) -> None:
        if not 0.0 < threshold <= reject_at <= 1.0:
            raise InvalidInput(
                f"sanctions thresholds: need 0 < threshold <= reject_at <= 1, got "
                f"threshold={threshold}, reject_at={reject_at}"
            )
        self.watchlist = watchlist
        self.threshold = threshold
        self.reject_at = reject_at
        # score >= threshold needs ratio >= this, since Jaro-Winkler is at most 1: a lossless cut.
        self._ratio_cutoff = 100.0 * max(0.0, (threshold - JW_WEIGHT) / (1.0 - JW_WEIGHT))
        self._forms: list[str] = []  # token-sorted normalised names and aliases
        self._weights: list[float] = []
        self._owners: list[tuple[WatchListEntry, str]] = []
        self._index: dict[str, list[int]] = {}
        for entry in watchlist.entries:
            for listed in (entry.name, *entry.aliases):
                tokens = _tokens(listed)
                self._add(tokens, 1.0, entry, listed)
                if entry.schema == "Person" and len(tokens) >= 2:
                    self._add([tokens[0][0], *tokens[1:]], INITIAL_WEIGHT, entry, listed)

    def _add(self, tokens: list[str], weight: float, entry: WatchListEntry, listed: str) -> None:
        n = len(self._forms)
        self._forms.append(" ".join(sorted(tokens)))
        self._weights.append(weight)
        self._owners.append((entry, listed))
        for key in _keys(tokens):
            self._index.setdefault(key, []).append(n)

    def match(self, name: str) -> Match | None:
        """The best-scoring listed name at or above `threshold`, or None."""
        tokens = _tokens(name)
        if not tokens:
            return None
        candidates: set[int] = set()
        for key in _keys(tokens):
            candidates.update(self._index.get(key, ()))
        if not candidates:
            return None
        query = " ".join(sorted(tokens))
        order = list(candidates)
        forms = [self._forms[i] for i in order]
        best, best_at = 0.0, -1
        for _, ratio, k in process.extract(
            query, forms, scorer=fuzz.ratio, score_cutoff=self._ratio_cutoff, limit=None
        ):
            n = order[k]
            jaro = JaroWinkler.normalized_similarity(query, self._forms[n])
            score = ((1.0 - JW_WEIGHT) * ratio / 100.0 + JW_WEIGHT * jaro) * self._weights[n]
            if score > best or (score == best and n < best_at):
                best, best_at = score, n
        if best_at < 0 or best < self.threshold:
            return None
        entry, listed = self._owners[best_at]
        return Match(entry, listed, round(best, 4))

    def decide(self, name: str) -> Decision:
        found = self.match(name)
        if found is None:
            return APPROVE
        verdict: Literal["reject", "review"] = (
            "reject" if found.score >= self.reject_at else "review"
        )
        reason = f"sanctions:match {found.entry.id} {found.matched_name!r}"
        return Decision(verdict, reason, found.score)


def parse_watchlist(text: str, source: str) -> WatchList:
    """The watch list in `text` (CSV, columns COLUMNS); `source` names it in errors."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise WatchListError(
            f"{source}: the file is empty, expected the header {','.join(COLUMNS)}"
        )
    if tuple(header) != COLUMNS:
        raise WatchListError(
            f"{source} line 1: the header is {','.join(header)!r}, expected {','.join(COLUMNS)!r}"
        )
    entries: list[WatchListEntry] = []
    first_seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not row:
            continue
        entries.append(_entry(row, source, line, first_seen))
    if not entries:
        raise WatchListError(f"{source}: no entries after the header")
    return WatchList(source, tuple(entries))


def _entry(row: list[str], source: str, line: int, first_seen: dict[str, int]) -> WatchListEntry:
    where = f"{source} line {line}"
    if len(row) != len(COLUMNS):
        raise WatchListError(f"{where}: {len(row)} columns, expected {len(COLUMNS)}")
    fields = dict(zip(COLUMNS, (v.strip() for v in row), strict=True))
    for column in ("id", "schema", "name"):
        if not fields[column]:
            raise WatchListError(f"{where}: column {column!r} is empty")
    entry_id, schema = fields["id"], fields["schema"]
    if entry_id in first_seen:
        raise WatchListError(
            f"{where}: column 'id' repeats {entry_id!r} (first on line {first_seen[entry_id]})"
        )
    first_seen[entry_id] = line
    if schema not in SCHEMAS:
        raise WatchListError(
            f"{where}: column 'schema' is {schema!r}, expected one of {', '.join(SCHEMAS)}"
        )
    if not _tokens(fields["name"]):
        raise WatchListError(f"{where}: column 'name' has no letters or digits")
    aliases = tuple(a.strip() for a in fields["aliases"].split(";")) if fields["aliases"] else ()
    for alias in aliases:
        if not _tokens(alias):
            raise WatchListError(
                f"{where}: column 'aliases' has an alias with no letters or digits ({alias!r})"
            )
    countries = tuple(c.strip() for c in fields["countries"].split(";") if c.strip())
    return WatchListEntry(
        entry_id,
        "Person" if schema == "Person" else "Organization",
        fields["name"],
        aliases,
        countries,
        fields["program"],
        fields["dataset"],
    )


def load_watchlist(path: Path | None = None) -> WatchList:
    """Read and parse a watch list; None reads the one shipped in reference_impl/data."""
    try:
        if path is None:
            source = "reference_impl/data/watchlist.csv"
            text = (
                resources.files("reference_impl.data")
                .joinpath("watchlist.csv")
                .read_text(encoding="utf-8")
            )
        else:
            source = str(path)
            text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise WatchListError(f"{source}: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise WatchListError(f"{source}: cannot read it ({exc.strerror or exc})") from exc
    return parse_watchlist(text, source)
