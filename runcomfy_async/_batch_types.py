"""What flows through a batch: typed input items, one result per input, and input identity.

An input's *identity* is how the journal recognises it on a later run, whatever line it sits on:
the user's explicit key (``k:cat``), else a hash of the model and the merged inputs (``c:…``),
with an occurrence count for exact repeats (``c:…#1`` is the second identical input). Inserting
a line at the top of a file therefore changes no identity, and two identical prompts are still
two inputs (two jobs, two results).
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec

from ._download import DownloadedFile
from ._download_policy import safe_stem
from ._states import BatchStatus

__all__ = ["BatchItem", "BatchResult", "Identities", "content_digest", "file_stem"]

_ENCODER = msgspec.json.Encoder(order="sorted")  # sorted keys: the same inputs hash the same


class BatchItem(msgspec.Struct, frozen=True, kw_only=True):
    """One input of a batch, as a reader hands it to :class:`~runcomfy_async.BatchRunner`.

    Plain dicts, typed model Structs and ``(key, inputs)`` pairs are turned into items by the
    runner itself; pass items directly to give each a key, a position or a known error.

    Attributes:
        index: the input's 0-based position among the inputs (used for ordering and file
            names, not for identity).
        inputs: the model inputs, merged with any shared fields.
        key: the user's name for the input, unique within the batch; ``None`` to identify it
            by its content.
        error: ``None`` for a valid input; else why it is invalid (nothing is sent for it).
        source: where the input came from, for messages (``"prompts.jsonl:17"``).
    """

    index: int
    inputs: dict[str, Any]
    key: str | None = None
    error: str | None = None
    source: str | None = None


class BatchResult(msgspec.Struct, kw_only=True, omit_defaults=False):
    """Where one batch input stands: one line of results.jsonl.

    Attributes:
        index: the input's position in the input stream (0-based).
        key: the user's key for the input, if given.
        id: the input's identity in the journal (see :class:`Identities`).
        model_id: the model it ran on.
        input: the inputs as sent.
        request_id: the job's id, if a job was created.
        status: a :data:`~runcomfy_async._states.BatchStatus`: ``succeeded``, ``failed``
            (the server said so), ``cancelled``, ``invalid`` (nothing was sent),
            ``uncertain`` (a submit may have created a job we never heard of),
            ``download_failed`` (the job succeeded, an output could not be saved; ``--resume``
            fetches it again), ``submitted`` (paid, not finished as far as we know: a resume
            follows it) or ``pending`` (not submitted: a resume submits it).
        urls: the output URLs (the API token, should a server echo it, replaced).
        files: the downloaded outputs (path relative to the output folder, size, sha256).
        error: why it did not succeed, one line.
        error_kind: the error's class name.
        submitted_at, finished_at: ISO-8601 times (server's finish time when known).
        duration_s: how long the job ran on the server, when known.
        wait_s: from submit to the result in hand.
        cost: the job's cost in USD as the API reported it (``None`` when it did not).
        orphan: a journaled job whose input is no longer among the inputs (the input file
            or a shared field changed): followed to its end and reported, never abandoned.
    """

    index: int
    key: str | None = None
    id: str
    model_id: str | None = None
    input: dict[str, Any] | None = None
    request_id: str | None = None
    status: BatchStatus
    urls: list[str] = msgspec.field(default_factory=list)
    files: list[DownloadedFile] = msgspec.field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None
    submitted_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    wait_s: float | None = None
    cost: float | None = None
    orphan: bool = False

    @property
    def ok(self) -> bool:
        """Whether the input succeeded (outputs downloaded, if downloads were asked for)."""
        return self.status == "succeeded"


def content_digest(model_id: str, inputs: Mapping[str, Any]) -> str:
    """A short hash of a model id and its inputs (key order does not matter)."""
    digest = hashlib.sha256()
    digest.update(model_id.encode())
    digest.update(b"\0")
    digest.update(_ENCODER.encode(inputs))
    return digest.hexdigest()[:24]


class Identities:
    """Gives each input of one run its identity, counting exact repeats.

    Memory grows with the number of distinct inputs (a short digest each), never with their
    size.
    """

    def __init__(self) -> None:
        # Keyed by the key, or by the digest's bytes (smaller than its hex).
        self._seen: collections.Counter[str | bytes] = collections.Counter()
        self.keys: dict[str, int] = {}
        """Explicit keys seen so far -> the index of their first input."""

    def of(self, model_id: str, inputs: Mapping[str, Any], key: str | None) -> str:
        """The identity of the next input: ``k:<key>``, or ``c:<digest>`` (``#n`` for repeats).

        A key seen before gets ``k:<key>#n``: the caller treats it as a duplicate.
        """
        if key is not None:
            slot: str | bytes = key
            base = "k:" + key
        else:
            digest = content_digest(model_id, inputs)
            slot, base = bytes.fromhex(digest), "c:" + digest
        count = self._seen[slot]
        self._seen[slot] = count + 1
        return base if count == 0 else f"{base}#{count}"

    def __contains__(self, ident: object) -> bool:
        """Whether an identity was given out already (no set of them is kept for this)."""
        if not isinstance(ident, str):
            return False
        base, _, count = ident.partition("#")
        kind, _, name = base.partition(":")
        try:
            slot: str | bytes = name if kind == "k" else bytes.fromhex(name)
        except ValueError:
            return False
        return self._seen.get(slot, 0) > (int(count) if count.isdigit() else 0)


def file_stem(index: int, key: str | None) -> str:
    """The output file stem of an input: its index, or its key.

    A key that had to be sanitized gets a short hash of itself, so 'cat/1' and 'cat_1'
    never share a file.
    """
    if key is None:
        return f"{index:06d}"
    stem = safe_stem(key)
    if stem != key:
        stem = f"{stem[:80]}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    return stem
