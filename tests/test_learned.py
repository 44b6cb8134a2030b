"""The learned-knowledge cache file: where it lives, what it keeps, what it survives."""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import os
from pathlib import Path

import pytest

from runcomfy_async import AsyncClient
from runcomfy_async._learned import (
    CACHE_DIR_ENV,
    CACHE_SWITCH_ENV,
    FORMAT,
    MAX_ORIGINS,
    LearnedCache,
    ModelKnowledge,
    default_cache_dir,
    resolve_cache,
)
from runcomfy_async.testing import FakeRunComfy

from .conftest import FAST_RETRY, TOKEN

ORIGIN = "https://model-api.example"
MODEL = "google/nano-banana-2/text-to-image"


def knowledge(median: float = 15.0, updated: float = 1000.0) -> ModelKnowledge:
    return ModelKnowledge(mu=math.log(median), sigma=0.2, count=20, updated=updated)


def test_round_trip(tmp_path: Path) -> None:
    """A save is read back by another cache object on the same folder."""
    LearnedCache(tmp_path).save(ORIGIN, {MODEL: knowledge()}, rate_limit=20.0)
    known = LearnedCache(tmp_path).load(ORIGIN)
    assert known.models[MODEL].mu == pytest.approx(math.log(15.0))
    assert known.rate_limit == 20.0
    assert LearnedCache(tmp_path).load("https://other.example").models == {}


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b"[]", b'{"format": "someone-else/1", "origins": {}}', b"\xff\xfe"],
)
def test_corrupt_or_foreign_file_ignored(tmp_path: Path, content: bytes) -> None:
    """A corrupt or foreign file reads as empty and is replaced by the next save."""
    (tmp_path / "learned.json").write_bytes(content)
    cache = LearnedCache(tmp_path)
    assert cache.load(ORIGIN).models == {}
    assert cache.save(ORIGIN, {MODEL: knowledge()})
    assert MODEL in cache.load(ORIGIN).models


def test_values_out_of_range_dropped(tmp_path: Path) -> None:
    """An entry with a non-finite or implausible value is dropped, the rest kept."""
    good = {"mu": 2.0, "sigma": 0.3, "count": 5, "updated": 1.0}
    data = {
        "format": FORMAT,
        "origins": {
            ORIGIN: {
                "models": {
                    "a": good,
                    "b": {**good, "sigma": -1},
                    "c": {**good, "mu": 1e9},
                    "d": {**good, "count": 0},
                },
                "rate_limit": -5,
            }
        },
    }
    (tmp_path / "learned.json").write_text(json.dumps(data))
    known = LearnedCache(tmp_path).load(ORIGIN)
    assert set(known.models) == {"a"}
    assert known.rate_limit is None


def test_merge_keeps_newer_entry_per_model(tmp_path: Path) -> None:
    """A save merges with the file: other models stay, the newer entry of a model wins."""
    cache = LearnedCache(tmp_path)
    cache.save(ORIGIN, {"a": knowledge(10.0, updated=2000.0), "b": knowledge(5.0)})
    cache.save(ORIGIN, {"a": knowledge(99.0, updated=1500.0), "c": knowledge(7.0)})
    models = cache.load(ORIGIN).models
    assert set(models) == {"a", "b", "c"}
    assert models["a"].mu == pytest.approx(math.log(10.0))


def test_origins_pruned(tmp_path: Path) -> None:
    """Only the most recently saved origins are kept."""
    cache = LearnedCache(tmp_path)
    for i in range(MAX_ORIGINS + 3):
        cache.save(f"http://127.0.0.1:{1000 + i}", {MODEL: knowledge()})
    raw = json.loads((tmp_path / "learned.json").read_text())
    assert len(raw["origins"]) == MAX_ORIGINS
    assert f"http://127.0.0.1:{1000 + MAX_ORIGINS + 2}" in raw["origins"]


def test_disabled_reads_and_writes_nothing(tmp_path: Path) -> None:
    """With the cache off nothing is written and nothing is read."""
    cache = LearnedCache(None)
    assert not cache.enabled
    assert not cache.save(ORIGIN, {MODEL: knowledge()})
    assert cache.load(ORIGIN).models == {}
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_is_not_fatal(tmp_path: Path) -> None:
    """A folder that cannot be created makes a save return False, not raise."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert not LearnedCache(blocker / "sub").save(ORIGIN, {MODEL: knowledge()})


def test_resolve_switches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The env var and the argument decide the folder, or turn the cache off."""
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "c"))
    monkeypatch.delenv(CACHE_SWITCH_ENV, raising=False)
    assert resolve_cache(True).path == tmp_path / "c" / "learned.json"
    assert not resolve_cache(False).enabled
    monkeypatch.setenv(CACHE_SWITCH_ENV, "off")
    assert not resolve_cache(True).enabled
    assert resolve_cache(tmp_path / "x").path == tmp_path / "x" / "learned.json"


def test_default_dir_follows_platform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without the env var the folder is the platform's user cache folder."""
    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "runcomfy-async"
    monkeypatch.setattr("sys.platform", "darwin")
    assert default_cache_dir().parts[-3:] == ("Library", "Caches", "runcomfy-async")
    monkeypatch.setattr("sys.platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path))
    assert default_cache_dir() == tmp_path / "runcomfy-async" / "Cache"


def _save_many(folder: str, worker: int) -> None:
    cache = LearnedCache(Path(folder))
    for i in range(30):
        cache.save(ORIGIN, {f"m{worker}": knowledge(1.0 + i, updated=float(i + 1))})


def test_concurrent_processes_leave_a_valid_file(tmp_path: Path) -> None:
    """Processes saving at once never leave a torn file or a stray temp file."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_save_many, args=(str(tmp_path), w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    raw = json.loads((tmp_path / "learned.json").read_text())
    assert raw["format"] == FORMAT
    models = LearnedCache(tmp_path).load(ORIGIN).models
    assert models  # at least the last writer's entry; merges keep others most of the time
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


@pytest.mark.anyio
async def test_client_hands_its_learned_rate_to_the_next(tmp_path: Path) -> None:
    """A client that learned a rate limit saves it; the next client starts from it."""
    async with FakeRunComfy(token=TOKEN, duration_mean=0.2, rate_limit=40, seed=5) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, cache=tmp_path) as first:
            jobs = [await first.submit(MODEL, {"prompt": f"p{i}"}) for i in range(80)]
            await asyncio.gather(*jobs)
            learned = first.budget.adaptive
            assert learned is not None and learned.limit is not None
        saved = LearnedCache(tmp_path).load(fake.base_url).rate_limit
        assert saved is not None and saved == pytest.approx(learned.limit)
        async with AsyncClient(TOKEN, fake.base_url, cache=tmp_path) as second:
            adaptive = second.budget.adaptive
            assert adaptive is not None and adaptive.phase == "learned"
            assert adaptive.limit == pytest.approx(saved)


@pytest.mark.anyio
async def test_client_with_cache_off_writes_nothing(tmp_path: Path) -> None:
    """cache=False (or RUNCOMFY_CACHE=off) leaves the cache folder untouched."""
    async with FakeRunComfy(token=TOKEN, duration_mean=0.05, rate_limit=30, seed=6) as fake:
        async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY, cache=False) as client:
            jobs = [await client.submit(MODEL, {"prompt": f"p{i}"}) for i in range(60)]
            await asyncio.gather(*jobs)
    assert not (tmp_path / "learned.json").exists()
    assert not any(Path(os.environ["RUNCOMFY_CACHE_DIR"]).iterdir())
