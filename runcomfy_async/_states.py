"""One vocabulary of states, shared by library, batch, journal, CLI and gallery.

A *job* state (:data:`Phase`) is what the server says of one request; the server's own words
(``completed``, ``in_progress`` …) are mapped onto it once, in :mod:`runcomfy_async._wire`.
A *batch* state (:data:`BatchStatus`) is where one input of a batch stands, which adds the
states only a batch knows: not sent yet, refused before sending, paid but not yet answered,
outputs not downloaded.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "BATCH_STATUSES",
    "PROBLEM_STATUSES",
    "BatchStatus",
    "FINAL_PHASES",
    "Phase",
]

#: Where one job stands on the server, in the library's words.
Phase = Literal["queued", "running", "succeeded", "failed", "cancelled"]

#: Phases after which the server will not change its answer.
FINAL_PHASES: Final[frozenset[Phase]] = frozenset({"succeeded", "failed", "cancelled"})

#: Where one input of a batch stands.
#:
#: ``pending``: not submitted yet (never paid); ``submitted``: paid, the server has not given a
#: final answer yet; ``succeeded``; ``failed``: the server reports the job failed;
#: ``cancelled``; ``invalid``: refused before sending (or by the server as invalid input);
#: ``uncertain``: a submit may have reached the server but gave no request id;
#: ``download_failed``: the job succeeded but an output file could not be saved.
BatchStatus = Literal[
    "pending",
    "submitted",
    "succeeded",
    "failed",
    "cancelled",
    "invalid",
    "uncertain",
    "download_failed",
]

#: Every batch state, in the order summaries and the gallery list them.
BATCH_STATUSES: Final[tuple[BatchStatus, ...]] = (
    "succeeded",
    "download_failed",
    "failed",
    "invalid",
    "uncertain",
    "cancelled",
    "submitted",
    "pending",
)

#: Batch states a user should look at.
PROBLEM_STATUSES: Final[frozenset[BatchStatus]] = frozenset(
    {"download_failed", "failed", "invalid", "uncertain"}
)
