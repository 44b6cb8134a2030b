"""An in-process emulator of the RunComfy Model API, for tests, benchmarks and local runs.

:class:`FakeRunComfy` serves the four Model API endpoints on one loopback listener and the
generated images on a second one (a different origin, as the real CDN is), with knobs for job
durations, server-side queueing, failures, rate limits and transport faults, the accidents of
real accounts (an empty balance, a revoked token, an outage, a slow output host), a state
file that outlives the process, plus scripted answers for exercising every protocol variant.
Job states are computed lazily from the clock when a request arrives, so it holds 100,000 jobs
and thousands of requests a second without one task or timer per job.

Example:
    >>> import aiohttp
    >>> async def demo() -> None:
    ...     async with FakeRunComfy(duration_mean=0.01) as fake:
    ...         async with aiohttp.ClientSession(headers={"Authorization": "Bearer t"}) as http:
    ...             url = f"{fake.base_url}/v1/models/google/nano-banana-2/text-to-image"
    ...             async with http.post(url, json={"prompt": "a cat"}) as resp:
    ...                 job = await resp.json()
    ...         assert fake.jobs[job["request_id"]].model_id.startswith("google/")
"""

from __future__ import annotations

from ._emulator._jobs import FakeJob, draw_duration
from ._emulator._server import EmulatorServer

__all__ = ["FakeJob", "FakeRunComfy", "draw_duration"]


class FakeRunComfy(EmulatorServer):
    """An aiohttp.web emulator of the RunComfy Model API, with load and fault knobs.

    The API listener answers ``POST /v1/models/{model_id}``, ``GET /v1/requests/{id}/status``,
    ``GET /v1/requests/{id}/result`` and ``POST /v1/requests/{id}/cancel`` as PROTOCOL.md
    describes, plus the catalog (PROTOCOL.md §6): ``GET /v1/models`` (``search``,
    ``category``, ``kind``, ``limit`` 1-500 (default 50), ``offset``, ``include_schema=true``),
    ``GET /v1/models/categories`` and ``GET /v1/models/{model_id}`` (with ``input_schema``).
    The output listener serves ``GET /outputs/{id}/{i}.png`` (small real PNGs).

    A well-formed model id the catalog does not know is refused with HTTP 400 and error code
    400001, at submit and at ``GET /v1/models/{id}``. A repeated cancel answers
    ``not_cancellable``. ``/result?include_cost=true`` adds ``cost`` (USD) to a finished
    job: ``base_price_usd`` times the outputs (``price_unit`` ``"output"``), times the
    ``duration`` input (``"second"``), or once (any other unit); 0 for a failed or cancelled
    job; absent when the model has no finite price >= 0. The bundled models' prices are the
    emulator's own figures (``runcomfy_async._emulator._catalog.BUNDLED_PRICES``).

    Every API call must carry ``Authorization: Bearer <token>``; a missing header is refused
    even when any token is accepted. Random faults are drawn per request, for endpoints in
    ``fault_endpoints`` only, in this order: a 5xx (the request never reaches the handler, so a
    submit creates no job); otherwise the handler runs and then the answer may be lost to a
    reset (a submit DID create its job) or, if it is 2xx, truncated to invalid JSON; finally
    any answer may be delayed. Scripted answers (:meth:`inject`) come before authentication,
    rate limiting and random faults.

    Args:
        host: interface both listeners bind to.
        port: API port; 0 picks a free one (kept across :meth:`stop`/:meth:`start`; with a
            ``state_path``, the port recorded there is tried first).
        output_port: output port; 0 picks a free one (likewise).
        token: the accepted API token. When set, every API call must carry
            ``Authorization: Bearer <token>``. ``None`` accepts any non-empty bearer token,
            but still refuses a request without one.
        duration_mean: mean seconds a job runs once started (``>= 0``).
        duration_sigma: lognormal sigma of the duration; 0 makes every job take exactly
            ``duration_mean``.
        model_durations: per model id, ``(mean, sigma)`` of its jobs instead of
            ``duration_mean`` and ``duration_sigma`` (e.g. a fast and a slow model).
        concurrency: server-side slots; ``None`` means no limit (jobs never queue). With a
            number, extra jobs wait in a FIFO queue and report ``queue_position``.
        failure_rate: probability that a job ends failed.
        failed_status: what ``/status`` says for a failed job: ``"completed"`` (documented)
            or ``"failed"``.
        pending_result: ``/result`` before the job ends: ``"200"`` answers the current state
            (documented); ``"400005"`` answers HTTP 400 with error code 400005.
        rate_limit: requests a second over all API calls (token bucket); beyond it 429.
            ``None`` means no limit.
        rate_burst: bucket size; ``None`` means ``ceil(rate_limit)``.
        retry_after: send ``Retry-After`` (whole seconds, at least 1) with each 429.
        error_rate: probability of an injected 5xx: half JSON 503 with error code 500001,
            half an HTML 502/503 proxy page.
        reset_rate: probability that the connection is reset instead of answered.
        slow_rate: probability that an answer is delayed by ``slow_seconds``.
        slow_seconds: the delay of a slow answer.
        malformed_rate: probability that a 2xx answer's JSON body is truncated.
        fault_endpoints: endpoints the random faults apply to: any of ``"submit"``,
            ``"status"``, ``"result"``, ``"cancel"``, ``"output"``.
        validate: validate the inputs of the known seed models (answer 422 on a violation).
        num_outputs_key: output shape: ``"auto"`` gives ``{"image": url}`` for one image and
            ``{"images": [...]}`` when ``num_images > 1``; ``"images"`` always gives a list.
        seed: seed for durations, failures and faults; ``None`` for a fresh random seed.
        max_body_bytes: larger submit bodies get 413.
        record_arrivals: append ``(time.monotonic(), endpoint)`` to :attr:`arrivals` for every
            API request.
        balance: how many jobs the account can pay for; ``None`` (default) is unlimited. Each
            submit that creates a job uses one; once none is left, a submit that would create
            a job is refused (``balance_error``) and creates nothing. Invalid submits (bad
            model id, bad inputs) are refused before the balance is looked at. See
            :meth:`top_up` and :attr:`balance`.
        balance_error: how an empty balance is answered: ``"400002"`` (default) is HTTP 400
            ``{"error_code": 400002, "error_message": "InsufficientResources: ..."}`` as
            PROTOCOL.md documents; ``"402"`` is HTTP 402 with error code 402001.
        auth_error: how refused credentials (missing, wrong or revoked token) are answered:
            ``"401"`` (default) is HTTP 401 with error code 401001; ``"400004"`` is HTTP 400
            with error code 400004 (UserAccountError).
        revoke_after: revoke the token once this many API requests have been authorized
            (``0`` revokes it from the start): request ``revoke_after + 1`` and every later one
            is refused as ``auth_error`` says, on every API endpoint, until
            :meth:`restore_token`. Jobs keep running on the server meanwhile. ``None``
            (default) never revokes by itself; see also :meth:`revoke_token`.
        output_drip: seconds between single bytes of an output body (a slow-drip host): the
            status line and headers, with the full ``Content-Length``, are sent at once, then
            one byte, a pause, the next byte... ``None`` (default) sends outputs at once.
        output_drip_count: how many output requests drip: the first ``output_drip_count``
            successful output requests are slow and later ones are served at once (so a
            client that gives up and retries can succeed). ``None`` (default): every one.
        state_path: a JSON Lines file holding the jobs (ids, models, timelines in wall-clock
            terms, fates, number of outputs; inputs up to 64 KiB), so a new emulator (another
            process) started on it continues them: jobs that finished meanwhile are finished,
            running ones keep their end time, outputs are the same bytes. Loaded on the first
            :meth:`start`, appended to (and flushed) on every submit and cancel, rewritten as a
            compact snapshot atomically on :meth:`stop`. The balance and counters other than
            :attr:`jobs_created` are not stored. ``None`` (default) keeps jobs in memory only.
        accept_any_model: accept any well-formed model id at submit, known or not (the old
            behaviour). ``False`` (default) answers an unknown id with 400/400001.
        extra_models: more catalog entries, e.g. an untyped model with a JSON schema:
            ``{"model_id": "acme/upscale", "input_schema": {...}, "base_price_usd": 0.02,
            "price_unit": "output"}``. Only ``model_id`` is required; ``display_name``,
            ``description``, ``categories``, ``kind`` (``"model"``), ``model_url``,
            ``inputs`` and ``required_inputs`` are derived when missing. Submits to them are
            accepted, and refused with 422 when a field the schema's ``required`` lists is
            missing (nothing else of the schema is checked). An entry with a bundled id
            replaces the bundled one. ``base_price_usd`` is served as given, even malformed.

    Besides the counters under Attributes, it offers :attr:`jobs`, :attr:`jobs_created`,
    :attr:`early_results`, :attr:`output_requests`, :attr:`output_auth_headers`,
    :attr:`output_responses`, :attr:`output_drips`, :attr:`balance`,
    :attr:`balance_refusals`, :attr:`auth_refusals` and :attr:`token_revoked`; the controls
    :meth:`top_up`, :meth:`revoke_token`, :meth:`restore_token`, :meth:`go_down`,
    :meth:`come_back`, :meth:`outage` and :meth:`inject`; and :meth:`stats` for all counters.

    Attributes:
        requests: API requests that reached a handler, by endpoint (``"submit"``, ``"status"``,
            ``"result"``, ``"cancel"``, and ``"other"`` for unknown routes), including those
            answered 401/429/5xx or reset.
        responses: API answers by HTTP status; resets count as status 0.
        rate_limited: how many 429s were sent.
        arrivals: ``(monotonic time, endpoint)`` of every API request when ``record_arrivals``
            (endpoint ``"other"`` for unknown routes).

    Example:
        >>> async def demo() -> None:
        ...     async with FakeRunComfy(concurrency=2, duration_mean=0.5, seed=1) as fake:
        ...         client_base_url = fake.base_url  # e.g. http://127.0.0.1:40123
    """
