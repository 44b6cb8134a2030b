"""What a test reads and steers on a running emulator: counters, the account, scripts, states.

:class:`Controls` is the part of :class:`FakeRunComfy <runcomfy_async.testing.FakeRunComfy>`
that never touches a socket; the server body (:mod:`._server`) provides the parts it reads.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from ._account import Account
from ._api import ModelApi
from ._faults import Faults
from ._http import ALL_ENDPOINTS, Script
from ._jobs import FakeJob, JobScheduler
from ._outputs import OutputHost

__all__ = ["Controls"]


class Controls:
    """Counters, account controls, scripted answers and job introspection of the emulator."""

    _account: Account
    _api: ModelApi
    _faults: Faults
    _outputs: OutputHost
    _sched: JobScheduler

    # ------------------------------------------------------------------------------ counters

    @property
    def jobs(self) -> dict[str, FakeJob]:
        """Every job by request id (the live store: do not modify it)."""
        return self._api.jobs

    @property
    def jobs_created(self) -> int:
        """How many jobs were created (including those loaded from ``state_path``)."""
        return self._api.jobs_created

    @property
    def early_results(self) -> Counter[str]:
        """``/result`` answers given before the job ended, by state (``in_queue``, ...)."""
        return self._api.early_results

    @property
    def output_requests(self) -> int:
        """Requests to the output listener."""
        return self._outputs.requests

    @property
    def output_auth_headers(self) -> int:
        """Output requests carrying an ``Authorization`` header (a correct client sends none)."""
        return self._outputs.auth_headers

    @property
    def output_responses(self) -> Counter[int]:
        """Output answers by HTTP status; resets count as status 0."""
        return self._outputs.responses

    @property
    def output_drips(self) -> int:
        """Output requests answered slowly, one byte every ``output_drip`` seconds."""
        return self._outputs.drips

    # ------------------------------------------------------------------------------- account

    @property
    def balance(self) -> int | None:
        """Jobs the account can still pay for, or ``None`` when unlimited."""
        return self._account.balance

    def top_up(self, jobs: int) -> None:
        """Add room for ``jobs`` more jobs to the balance.

        Args:
            jobs: how many, ``>= 1``.

        Raises:
            ValueError: ``jobs < 1``, or the balance is unlimited (``balance=None``).
        """
        self._account.top_up(jobs)

    @property
    def balance_refusals(self) -> int:
        """Submits refused for an empty balance (they created no job)."""
        return self._account.balance_refusals

    @property
    def token_revoked(self) -> bool:
        """Whether the token is revoked now (every API call is refused)."""
        return self._account.revoked

    def revoke_token(self, after: int = 0) -> None:
        """Revoke the token now, or once ``after`` more API requests have been authorized.

        While revoked, every API endpoint answers as ``auth_error`` says; jobs keep running.

        Args:
            after: API requests still accepted first, ``>= 0``.

        Raises:
            ValueError: ``after`` is negative.
        """
        self._account.revoke(after)

    def restore_token(self) -> None:
        """Accept the token again, and drop any pending ``revoke_after``."""
        self._account.restore()

    @property
    def auth_refusals(self) -> int:
        """API requests refused for their credentials (missing, wrong or revoked token)."""
        return self._account.auth_refusals

    # ------------------------------------------------------------------------- introspection

    def job_states(self) -> Counter[str]:
        """Count jobs by detailed state now.

        Returns:
            Counts keyed by ``in_queue``, ``in_progress``, ``succeeded``, ``failed`` and
            ``cancelled`` (unlike :attr:`FakeJob.status`, success and failure are apart).
        """
        now = time.monotonic()
        self._sched.advance(now)
        state = self._sched.state_unadvanced
        return Counter(state(job, now) for job in self.jobs.values())

    def finished_at_monotonic(self, request_id: str) -> float | None:
        """When a job ended on the server, in ``time.monotonic()`` terms.

        Benchmarks subtract this from the moment the client noticed.

        Args:
            request_id: the job's id.

        Returns:
            ``started + duration`` for a finished job, the cancel time for a cancelled one,
            ``None`` for an unknown or unfinished job.
        """
        job = self.jobs.get(request_id)
        return None if job is None else job.finished_monotonic(time.monotonic())

    @property
    def finish_times(self) -> dict[str, float]:
        """``request_id -> monotonic end time`` of every job that has ended so far."""
        now = time.monotonic()
        ends = ((rid, job.finished_monotonic(now)) for rid, job in self.jobs.items())
        return {rid: end for rid, end in ends if end is not None}

    # ----------------------------------------------------------------------------- scripting

    def inject(
        self,
        endpoint: str,
        *,
        status: int = 200,
        body: bytes | str | dict[str, Any] | list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
        times: int = 1,
        reset: bool = False,
        delay: float = 0.0,
        after: bool = False,
    ) -> None:
        """Queue a canned answer for the next ``times`` requests to ``endpoint``.

        Scripts queue up in order: a second call takes over when the first is used up. A
        scripted request still counts in ``requests`` and ``responses``, and skips
        authentication, rate limiting and random faults.

        Args:
            endpoint: ``"submit"``, ``"status"``, ``"result"``, ``"cancel"``, ``"models"``
                (the catalog's ``GET /v1/models...`` routes) or ``"output"``.
            status: the HTTP status to answer.
            body: the body; dicts and lists are JSON-encoded, ``str`` is UTF-8. ``None`` gives
                an error envelope ``{"error_code": status * 1000 + 1, ...}`` for statuses
                >= 400 and an empty body otherwise.
            headers: extra response headers, e.g. ``{"Retry-After": "3"}``.
            content_type: the Content-Type; defaults to ``application/json``.
            times: how many requests this answer serves.
            reset: abort the connection instead of answering.
            delay: seconds to wait before answering (or resetting).
            after: run the real handler first (a submit really creates its job, a cancel
                really cancels) and then replace its answer: "the request reached the
                server but the answer was lost".

        Raises:
            ValueError: for an unknown endpoint or a bad ``times``/``delay``/``status``.
        """
        if endpoint not in ALL_ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; use {sorted(ALL_ENDPOINTS)}")
        script = Script.build(
            status=status,
            body=body,
            headers=headers,
            content_type=content_type,
            times=times,
            reset=reset,
            delay=delay,
            after=after,
        )
        self._faults.add(endpoint, script)

    def clear_injections(self, endpoint: str | None = None) -> None:
        """Drop queued canned answers.

        Args:
            endpoint: only this endpoint's; ``None`` for all.
        """
        self._faults.clear(endpoint)

    def pending_injections(self, endpoint: str) -> int:
        """How many requests to ``endpoint`` will still get a canned answer.

        Args:
            endpoint: the endpoint name.

        Returns:
            The number of queued answers left.
        """
        return self._faults.pending(endpoint)
