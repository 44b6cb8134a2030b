"""The Model API's semantics for the emulator: submit, status, result, cancel and outputs.

:class:`ModelApi` owns the job store and answers each endpoint from it; the HTTP shell around
it (counting, authentication, rate limiting, scripted answers and faults) lives in
:mod:`runcomfy_async.testing`.
"""

from __future__ import annotations

import collections
import importlib
import random
import re
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import msgspec
from aiohttp import web

from .._exceptions import InputValidationError
from ._catalog import Catalog, unknown_model
from ._http import error_response, iso_time, json_response
from ._jobs import (
    CANCELLED,
    FAILED,
    IN_QUEUE,
    SUCCEEDED,
    FakeJob,
    JobScheduler,
    draw_duration,
)
from ._state import StateFile

__all__ = ["ModelApi"]

_MODEL_ID = re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*\Z")
_MAX_IMAGES = 16
_Validator = Callable[[str, Mapping[str, Any]], object]


class ModelApi:
    """The four Model API endpoints and the output images, over one job store.

    Every handler computes job states from the clock at the moment it runs; nothing here
    schedules work.

    Args:
        sched: the server-side slots and queue.
        rng: the random source for durations and failures.
        duration_mean: mean job duration in seconds.
        duration_sigma: lognormal sigma of the duration.
        failure_rate: probability that a job fails.
        pending_400005: answer ``/result`` with 400/400005 (instead of 200 and the current
            state) before the job ends.
        validate: validate the seed models' inputs (422 on a violation).
        always_list: put even a single output URL in an ``images`` list.
        max_body_bytes: larger submit bodies get 413.
        output_base_url: returns the output listener's origin (its port may change on start).
        catalog: the models known (unknown ones get 400001) and their prices.
        accept_any_model: accept any well-formed model id, known or not.
        charge: pays for one job before it is created; returns the refusal to send instead
            (an empty balance), or ``None``.
        state: where job creations and cancels are recorded, or ``None``.
        model_durations: per model id, ``(mean, sigma)`` instead of the defaults.

    Attributes:
        jobs: every job by request id.
        jobs_created: how many jobs were created.
        early_results: ``/result`` answers given before the job ended, by its state
            (``in_queue``, ``in_progress``): the checks a client spent too soon.
    """

    def __init__(
        self,
        *,
        sched: JobScheduler,
        rng: random.Random,
        duration_mean: float,
        duration_sigma: float,
        failure_rate: float,
        pending_400005: bool,
        validate: bool,
        always_list: bool,
        max_body_bytes: int,
        output_base_url: Callable[[], str],
        catalog: Catalog | None = None,
        accept_any_model: bool = False,
        charge: Callable[[], web.Response | None] = lambda: None,
        state: StateFile | None = None,
        model_durations: Mapping[str, tuple[float, float]] | None = None,
    ):
        self._sched = sched
        self._job_rng = rng
        self._duration_mean = duration_mean
        self._duration_sigma = duration_sigma
        self._model_durations = dict(model_durations or {})
        self._failure_rate = failure_rate
        self._pending_400005 = pending_400005
        self._validate = validate
        self._validator: _Validator | None = None
        self._validator_loaded = False
        self._always_list = always_list
        self._max_body = max_body_bytes
        self._output_base_url = output_base_url
        self.catalog = Catalog() if catalog is None else catalog
        self._accept_any = accept_any_model
        self._charge = charge
        self._state = state
        self.jobs: dict[str, FakeJob] = {}
        self.jobs_created = 0
        self.early_results: collections.Counter[str] = collections.Counter()

    async def submit(self, request: web.Request) -> web.Response:
        """``POST /v1/models/{model_id}``: check the id and body, create a job, answer its URLs.

        Args:
            request: the HTTP request.

        Returns:
            200 with ``request_id`` and absolute ``*_url`` fields built from the request's own
            Host; 400/400001 for a malformed or unknown model id, 413 for an oversize body,
            422/422001 for a body that is not a JSON object, breaks a seed model's schema or
            lacks a field an extra model requires, and the account's refusal (400/400002 or
            402) when the balance is empty.
        """
        model_id = request.match_info["model_id"]
        if not _MODEL_ID.match(model_id) or any(
            part in (".", "..") for part in model_id.split("/")
        ):
            return error_response(400, 400001, f"Invalid model id: {model_id!r}")
        if not self._accept_any and not self.catalog.knows(model_id):
            return unknown_model(model_id)
        size = request.content_length
        if size is not None and size > self._max_body:
            return error_response(413, 413001, f"Request body larger than {self._max_body} bytes")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, 413001, f"Request body larger than {self._max_body} bytes")
        try:
            inputs = msgspec.json.decode(raw) if raw.strip() else {}
        except msgspec.DecodeError as exc:
            return self._unprocessable(None, f"JSON decode error: {exc}", "json_invalid")
        if not isinstance(inputs, dict):
            return self._unprocessable(None, "Input should be a valid JSON object", "dict_type")
        if self._validate:
            validator = self._load_validator()
            if validator is not None:
                try:
                    validator(model_id, inputs)
                except InputValidationError as exc:
                    return self._unprocessable(exc.field, exc.reason, "value_error")
            missing = self.catalog.missing_inputs(model_id, inputs)
            if missing:
                return self._unprocessable(missing[0], "Field required", "missing")
        refusal = self._charge()
        if refusal is not None:
            return refusal
        job = self.create_job(model_id, inputs)
        base = f"{request.scheme}://{request.host}/v1/requests/{job.request_id}"
        return json_response(
            200,
            {
                "request_id": job.request_id,
                "status_url": f"{base}/status",
                "result_url": f"{base}/result",
                "cancel_url": f"{base}/cancel",
            },
        )

    @staticmethod
    def _unprocessable(field: str | None, reason: str, kind: str) -> web.Response:
        loc = ["body"] if field is None else ["body", field]
        detail = [{"loc": loc, "msg": reason, "type": kind}]
        return error_response(422, 422001, "Validation Error", detail=detail)

    def _load_validator(self) -> _Validator | None:
        if not self._validator_loaded:
            self._validator_loaded = True
            try:  # imported lazily and by name: the emulator runs without the models package
                module = importlib.import_module("runcomfy_async.models")
            except ImportError:
                return None
            validator = getattr(module, "validate_inputs", None)
            self._validator = validator if callable(validator) else None
        return self._validator

    def create_job(self, model_id: str, inputs: dict[str, Any]) -> FakeJob:
        """Create, admit and store a job, drawing its duration and fate.

        Args:
            model_id: the model submitted to.
            inputs: the decoded submit body.

        Returns:
            The new job.
        """
        count = inputs.get("num_images", 1)
        if isinstance(count, bool) or not isinstance(count, int):
            count = 1
        rng = self._job_rng
        job = FakeJob(
            self._sched,
            request_id=str(uuid.uuid4()),
            model_id=model_id,
            inputs=inputs,
            created_at=datetime.now(timezone.utc),
            created=time.monotonic(),
            duration=draw_duration(rng, *self._durations(model_id)),
            will_fail=bool(self._failure_rate) and rng.random() < self._failure_rate,
            num_images=min(max(count, 1), _MAX_IMAGES),
        )
        self._sched.admit(job, job.created)
        self.jobs[job.request_id] = job
        self.jobs_created += 1
        if self._state is not None:
            self._state.job_created(job)
        return job

    def restore_job(
        self,
        *,
        request_id: str,
        model_id: str,
        inputs: dict[str, Any],
        created_at: datetime,
        created: float,
        duration: float,
        will_fail: bool,
        num_images: int,
    ) -> FakeJob:
        """Re-create a job read from a state file (admitted at its original time, unpaid).

        Jobs must be restored in creation order, interleaved in time with
        :meth:`restore_cancel`, so the queue replays as it happened.

        Returns:
            The restored job (counted in :attr:`jobs_created`).
        """
        job = FakeJob(
            self._sched,
            request_id=request_id,
            model_id=model_id,
            inputs=inputs,
            created_at=created_at,
            created=created,
            duration=duration,
            will_fail=will_fail,
            num_images=num_images,
        )
        self._sched.admit(job, created)
        self.jobs[request_id] = job
        self.jobs_created += 1
        return job

    def restore_cancel(self, job: FakeJob, at: float) -> None:
        """Replay a cancel read from a state file at monotonic time ``at``."""
        self._sched.cancel(job, at)

    def _durations(self, model_id: str) -> tuple[float, float]:
        """Mean and sigma of the jobs of ``model_id``."""
        return self._model_durations.get(model_id, (self._duration_mean, self._duration_sigma))

    def _lookup(self, request: web.Request) -> FakeJob | web.Response:
        job = self.jobs.get(request.match_info["request_id"])
        if job is None:
            return error_response(404, 404001, "request not found")
        return job

    async def status(self, request: web.Request) -> web.Response:
        """``GET /v1/requests/{id}/status``: the job's state, plus ``queue_position`` if queued.

        Args:
            request: the HTTP request.

        Returns:
            200 with the status body, or 404/404001 for an unknown id.
        """
        job = self._lookup(request)
        if isinstance(job, web.Response):
            return job
        sched = self._sched
        state = sched.state(job, time.monotonic())
        base = f"{request.scheme}://{request.host}/v1/requests/{job.request_id}"
        body: dict[str, Any] = {"request_id": job.request_id, "status": sched.to_public(state)}
        if state == IN_QUEUE:
            body["queue_position"] = sched.queue_position(job)
        body["status_url"] = f"{base}/status"
        body["result_url"] = f"{base}/result"
        return json_response(200, body)

    async def result(self, request: web.Request) -> web.Response:
        """``GET /v1/requests/{id}/result``: outputs and timestamps, or the current state.

        Args:
            request: the HTTP request.

        Returns:
            200 with the result body (``output`` only when succeeded, ``error`` only when
            failed, ``cost`` in USD when finished and asked with ``include_cost=true``);
            before the end, 200 with the state or 400/400005; 404 for an unknown id.
        """
        job = self._lookup(request)
        if isinstance(job, web.Response):
            return job
        now = time.monotonic()
        state = self._sched.state(job, now)
        if state not in (SUCCEEDED, FAILED, CANCELLED):
            self.early_results[state] += 1
            if self._pending_400005:
                return error_response(400, 400005, "result not ready")
            return json_response(200, {"request_id": job.request_id, "status": state})
        ended = job.finished_monotonic(now)
        body: dict[str, Any] = {"request_id": job.request_id, "status": state}
        if state == SUCCEEDED:
            body["output"] = self._output(job)
        body["created_at"] = iso_time(job.created_at)
        body["finished_at"] = iso_time(job.wall_time(ended if ended is not None else now))
        if state == FAILED:
            body["error"] = {"type": "generation_error", "message": "emulated generation failure"}
        if request.query.get("include_cost", "").lower() in ("true", "1"):
            cost = self.catalog.cost(job, state)
            if cost is not None:
                body["cost"] = cost
        return json_response(200, body)

    def _output(self, job: FakeJob) -> dict[str, Any]:
        prefix = f"{self._output_base_url()}/outputs/{job.request_id}"
        urls = [f"{prefix}/{i}.png" for i in range(job.num_images)]
        if len(urls) == 1 and not self._always_list:
            return {"image": urls[0]}
        return {"images": urls}

    async def cancel(self, request: web.Request) -> web.Response:
        """``POST /v1/requests/{id}/cancel``: cancel a queued job.

        Args:
            request: the HTTP request.

        Returns:
            202 with ``outcome`` ``cancelled`` when this call cancelled a queued job, else
            ``not_cancellable`` with the current status (running, finished, or cancelled
            by an earlier call); 404 for an unknown id.
        """
        job = self._lookup(request)
        if isinstance(job, web.Response):
            return job
        sched = self._sched
        now = time.monotonic()
        if sched.cancel(job, now):
            if self._state is not None:
                self._state.job_cancelled(job)
            return json_response(
                202, {"request_id": job.request_id, "status": "cancelled", "outcome": "cancelled"}
            )
        status = sched.public_status(job, now)
        return json_response(
            202, {"request_id": job.request_id, "status": status, "outcome": "not_cancellable"}
        )
