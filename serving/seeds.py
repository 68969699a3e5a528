"""Seed and label lists on the command line (`0-99,200,300-309`; `1,1,2` or `0-9`), and
deterministic shards."""

from __future__ import annotations

from .errors import ServingError
from .latents import MAX_SEED

MAX_SEEDS_PER_RUN = 100_000_000


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """'0-3,10' -> [0, 1, 2, 3, 10]. Ranges are inclusive; order is kept; duplicates refused."""
    seeds = _parse_list(text, flag, "seed", MAX_SEED, "seeds run from 0 to 2**63-1")
    if len(set(seeds)) != len(seeds):
        raise ServingError(f"{flag}: {text!r} lists a seed more than once")
    return seeds


def parse_labels(text: str, flag: str = "--labels") -> list[int]:
    """'1,1,2' or '0-9' -> class indices, in order; a class may repeat. The model's class count
    is checked where the model is known."""
    return _parse_list(text, flag, "class index", MAX_SEED, "class indices start at 0")


def _parse_list(text: str, flag: str, what: str, largest: int, allowed: str) -> list[int]:
    """Comma-separated integers and inclusive ranges low-high, in order."""
    values: list[int] = []
    for part in text.split(","):
        part = part.strip()
        low_text, dash, high_text = part.partition("-")
        try:
            low = int(low_text)
            high = int(high_text) if dash else low
        except ValueError:
            raise ServingError(f"{flag}: {part!r} is not a {what} or a range like 0-99") from None
        if not 0 <= low <= high <= largest:
            raise ServingError(f"{flag}: {part!r} is not allowed; {allowed}, ranges low-high")
        if len(values) + high - low + 1 > MAX_SEEDS_PER_RUN:
            raise ServingError(f"{flag}: more than {MAX_SEEDS_PER_RUN} values; split the job with --shard")
        values.extend(range(low, high + 1))
    return values


def parse_shard(text: str) -> tuple[int, int]:
    """'3/10' -> (3, 10): shard 3 of 10, counted from 0."""
    index_text, slash, count_text = text.partition("/")
    try:
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ServingError(f"--shard: {text!r} is not K/N (for example 0/4)") from None
    if not slash or count < 1 or not 0 <= index < count:
        raise ServingError(f"--shard: {text!r} is not allowed; use K/N with 0 <= K < N")
    return index, count


def shard_of(seeds: list[int], index: int, count: int) -> list[int]:
    """Every count-th seed starting at index: shards are disjoint, balanced, and together
    they are the whole list."""
    return seeds[index::count]
