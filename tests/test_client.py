"""AsyncClient against the emulator on loopback: the verbs, every protocol variant, retries."""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings

import pytest

from runcomfy_async import (
    APIStatusError,
    AsyncClient,
    AuthenticationError,
    ConfigError,
    InputValidationError,
    JobCancelledError,
    JobFailedError,
    NotFoundError,
    PollSettings,
    RateLimitError,
    ResponseValidationError,
    ServerError,
)
from runcomfy_async.models import NanoBanana2Edit, NanoBanana2TextToImage
from runcomfy_async.testing import FakeRunComfy

from .conftest import FAST_RETRY, TOKEN

pytestmark = pytest.mark.anyio

T2I = "google/nano-banana-2/text-to-image"


async def test_submit_await_status_result_cancel(client: AsyncClient, fake: FakeRunComfy) -> None:
    """The contract of issue 2: submit, await the handle, status, result, cancel."""
    job = await client.submit(T2I, {"prompt": "a red fox"})
    assert job.request_id in fake.jobs
    res = await job
    assert res.status == "succeeded" and res.request_id == job.request_id
    assert res.output is not None and len(res.output.urls) == 1
    assert res.output.urls[0].startswith(fake.output_base_url)
    assert res.created_at is not None and res.finished_at is not None
    assert res.finished_at >= res.created_at and res.error is None
    st = await client.status(job.request_id)
    assert st.status == "completed" and st.queue_position is None
    again = await client.result(job.request_id)
    assert again.output == res.output
    c = await client.cancel(job.request_id)
    assert c.outcome == "not_cancellable"


async def test_run_is_submit_and_wait(client: AsyncClient, fake: FakeRunComfy) -> None:
    """client.run returns the finished result; the inputs arrive verbatim."""
    res = await client.run(T2I, {"prompt": "a red fox", "num_images": 3})
    assert res.output is not None and len(res.output.urls) == 3
    (job,) = fake.jobs.values()
    assert job.inputs == {"prompt": "a red fox", "num_images": 3}


async def test_typed_model_infers_id_and_omits_defaults(
    client: AsyncClient, fake: FakeRunComfy
) -> None:
    """A typed Struct picks the model id; defaults are not sent."""
    job = await client.submit(NanoBanana2TextToImage(prompt="a fox", aspect_ratio="16:9"))
    assert job.model_id == T2I
    await job
    assert fake.jobs[job.request_id].inputs == {"prompt": "a fox", "aspect_ratio": "16:9"}


async def test_dict_for_known_model_validated_before_sending(
    client: AsyncClient, fake: FakeRunComfy
) -> None:
    """A dict for a typed model is validated; a bad one sends nothing and names the field."""
    with pytest.raises(InputValidationError) as info:
        await client.submit(T2I, {"prompt": "x", "aspect_ratio": "7:7"})
    assert info.value.field == "aspect_ratio" and "16:9" in str(info.value)
    with pytest.raises(InputValidationError, match="num_images"):
        await client.submit(T2I, {"prompt": "x", "num_images": 5})
    with pytest.raises(InputValidationError, match="image_urls"):
        await client.submit(NanoBanana2Edit(prompt="x", image_urls=["http://insecure/a.png"]))
    assert fake.requests["submit"] == 0


async def test_unknown_model_passes_untyped() -> None:
    """Any other RunComfy model id is submitted as is (to a server that knows it)."""
    async with (
        FakeRunComfy(token=TOKEN, duration_mean=0.05, accept_any_model=True) as fake,
        AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY) as client,
    ):
        res = await client.run("someone/new-model/v2", {"anything": [1, 2], "goes": True})
        assert res.status == "succeeded"
        assert fake.jobs[res.request_id].inputs == {"anything": [1, 2], "goes": True}


async def test_bad_ids_refused_before_request(client: AsyncClient, fake: FakeRunComfy) -> None:
    """Malformed model and request ids raise ConfigError and send nothing."""
    with pytest.raises(ConfigError):
        await client.submit("../v1/requests/x/cancel", {})
    with pytest.raises(ConfigError):
        await client.status("../../v1/models/x")
    with pytest.raises(ConfigError):
        await client.cancel("a/b")
    assert sum(fake.requests.values()) == 0


async def test_reattach_by_request_id(fake: FakeRunComfy) -> None:
    """client.job(id) follows a job another client submitted."""
    async with AsyncClient(TOKEN, fake.base_url) as first:
        job = await first.submit(T2I, {"prompt": "x"})
        rid = job.request_id
    async with AsyncClient(TOKEN, fake.base_url, retry=FAST_RETRY) as second:
        again = second.job(rid, T2I)
        assert second.job(rid) is again
        res = await again
        assert res.request_id == rid
    assert fake.jobs_created == 1


@pytest.mark.parametrize("pending", ["200", "400005"])
async def test_both_pending_result_variants(pending: str) -> None:
    """A pending result is 200 with the state, or HTTP 400 with 400005; both keep polling."""
    # Half a second: the poller's first check, 0.02 s in, meets a pending job unless this
    # machine stalls for most of it.
    async with FakeRunComfy(duration_mean=0.5, duration_sigma=0.0, pending_result=pending) as fake:
        async with AsyncClient(
            TOKEN, fake.base_url, retry=FAST_RETRY, poll=PollSettings(first_check=0.02)
        ) as client:
            job = await client.submit(T2I, {"prompt": "x"})
            now = await client.result(job.request_id)
            assert now.output is None and now.status in ("in_progress", "pending")
            res = await job
            assert res.status == "succeeded"
            assert fake.requests["result"] >= 3


async def test_failed_job_raises_with_server_error(fake: FakeRunComfy) -> None:
    """A failed job raises JobFailedError carrying the server's error as sent."""
    async with FakeRunComfy(failure_rate=1.0, duration_mean=0.01) as failing:
        async with AsyncClient(TOKEN, failing.base_url, retry=FAST_RETRY) as client:
            job = await client.submit(T2I, {"prompt": "x"})
            with pytest.raises(JobFailedError) as info:
                await job
            assert isinstance(info.value.error, dict) and info.value.error["message"]
            assert info.value.request_id == job.request_id
            direct = await client.result(job.request_id)
            assert direct.status == "failed"


@pytest.mark.parametrize(
    "error",
    [
        "model exploded",
        {"type": "oom", "message": "model exploded"},
        [{"errorCode": 7, "error": "model exploded"}],
    ],
)
async def test_failed_error_shapes(client: AsyncClient, fake: FakeRunComfy, error: object) -> None:
    """String, object and list errors all surface, and str(exc) is one readable line."""
    job = await client.submit(T2I, {"prompt": "x"})
    fake.inject("result", body={"request_id": job.request_id, "status": "failed", "error": error})
    with pytest.raises(JobFailedError) as info:
        await job
    assert info.value.error == error
    assert "model exploded" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("word", ["cancelled", "canceled"])
async def test_cancelled_spellings(client: AsyncClient, fake: FakeRunComfy, word: str) -> None:
    """Both spellings of cancelled end the job with JobCancelledError."""
    job = await client.submit(T2I, {"prompt": "x"})
    fake.inject("result", body={"request_id": job.request_id, "status": word})
    with pytest.raises(JobCancelledError):
        await job


async def test_cancel_queued_job(fake: FakeRunComfy) -> None:
    """Cancelling a queued job answers 'cancelled' and ends the handle."""
    async with FakeRunComfy(concurrency=1, duration_mean=2.0) as slow:
        async with AsyncClient(TOKEN, slow.base_url, retry=FAST_RETRY) as client:
            first = await client.submit(T2I, {"prompt": "runs"})
            second = await client.submit(T2I, {"prompt": "waits"})
            st = await second.status()
            assert st.status == "in_queue" and st.queue_position == 0
            answer = await second.cancel()
            assert answer.outcome == "cancelled" and answer.cancelled
            with pytest.raises(JobCancelledError):
                await second
            assert (await first.cancel()).outcome == "not_cancellable"
            assert slow.jobs[second.request_id].status == "cancelled"


async def test_unknown_status_is_in_flight(client: AsyncClient, fake: FakeRunComfy) -> None:
    """An unknown result status keeps the job in flight; the job still completes."""
    job = await client.submit(T2I, {"prompt": "x"})
    fake.inject("result", body={"request_id": job.request_id, "status": "warming_up"}, times=2)
    res = await job
    assert res.status == "succeeded"


async def test_status_variants(client: AsyncClient, fake: FakeRunComfy) -> None:
    """Status 'failed' and 'canceled' decode; unknown values come through."""
    job = await client.submit(T2I, {"prompt": "x"})
    for word in ("failed", "canceled", "booting"):
        fake.inject("status", body={"request_id": job.request_id, "status": word})
        assert (await client.status(job.request_id)).status == word


async def test_http_200_with_error_code_is_an_error(
    client: AsyncClient, fake: FakeRunComfy
) -> None:
    """HTTP 200 with a non-null error_code raises, never passes as a success."""
    job = await client.submit(T2I, {"prompt": "x"})
    fake.inject("status", body={"error_code": 403001, "error_message": "not your request"})
    with pytest.raises(AuthenticationError, match="not your request") as info:
        await client.status(job.request_id)
    assert info.value.error_code == 403001
    assert fake.requests["status"] == 1  # not retried


@pytest.mark.parametrize(
    ("status", "body", "exc_type", "text"),
    [
        (
            401,
            {"error_code": 401001, "error_message": "bad token", "detail": None},
            AuthenticationError,
            "bad token",
        ),
        (
            400,
            {"code": 400004, "error": "UserAccountError"},
            AuthenticationError,
            "UserAccountError",
        ),
        (403, {"message": "Forbidden here"}, AuthenticationError, "Forbidden here"),
        (
            404,
            {"error_code": 404001, "error_message": "request not found"},
            NotFoundError,
            "not found",
        ),
        (
            422,
            {"error_code": 422001, "detail": [{"loc": ["body", "seed"], "msg": "bad seed"}]},
            APIStatusError,
            "seed: bad seed",
        ),
    ],
)
async def test_error_bodies_not_retried(
    client: AsyncClient,
    fake: FakeRunComfy,
    status: int,
    body: object,
    exc_type: type[APIStatusError],
    text: str,
) -> None:
    """Every error envelope maps to its error class with a readable message; 4xx not retried."""
    fake.inject("status", status=status, body=body)  # type: ignore[arg-type]
    with pytest.raises(exc_type, match=text) as info:
        await client.status("some-request-id")
    assert info.value.status_code == status
    assert fake.requests["status"] == 1


async def test_html_503_from_proxy_is_retried(client: AsyncClient, fake: FakeRunComfy) -> None:
    """A non-JSON 503 page is a ServerError; reads retry it and then succeed."""
    job = await client.submit(T2I, {"prompt": "x"})
    page = "<html><head><title>503 Service Unavailable</title></head><body>nginx</body></html>"
    fake.inject("status", status=503, body=page, content_type="text/html", times=2)
    st = await client.status(job.request_id)
    assert st.request_id == job.request_id
    assert fake.requests["status"] == 3


async def test_html_503_message(fake: FakeRunComfy) -> None:
    """When retries run out, the error quotes the page's title, not raw HTML."""
    async with AsyncClient(
        TOKEN, fake.base_url, retry=FAST_RETRY.__class__(max_attempts=1)
    ) as client:
        fake.inject(
            "status",
            status=503,
            body="<html><title>Bad Gateway</title></html>",
            content_type="text/html",
        )
        with pytest.raises(ServerError, match="Bad Gateway") as info:
            await client.status("abc")
        assert "<html>" not in str(info.value)


async def test_reads_retry_resets_and_malformed(client: AsyncClient, fake: FakeRunComfy) -> None:
    """Resets and undecodable bodies on reads are retried."""
    job = await client.submit(T2I, {"prompt": "x"})
    fake.inject("status", reset=True)
    fake.inject("status", body=b'{"request_id": "x", "sta')
    st = await client.status(job.request_id)
    assert st.request_id == job.request_id
    assert fake.requests["status"] == 3


async def test_malformed_body_after_retries(fake: FakeRunComfy) -> None:
    """An undecodable 2xx body that persists raises ResponseValidationError."""
    async with AsyncClient(
        TOKEN, fake.base_url, retry=FAST_RETRY.__class__(max_attempts=2)
    ) as client:
        fake.inject("status", body=b"not json at all", times=2)
        with pytest.raises(ResponseValidationError):
            await client.status("abc")


async def test_429_retry_after_honoured(client: AsyncClient, fake: FakeRunComfy) -> None:
    """A 429 with Retry-After pauses the client; the read then succeeds."""
    job = await client.submit(T2I, {"prompt": "x"})
    await job
    fake.inject("status", status=429, headers={"Retry-After": "1"})
    loop = asyncio.get_running_loop()
    start = loop.time()
    st = await client.status(job.request_id)
    assert st.status == "completed"
    assert client.rate_limited == 1 and client.budget.pauses == 1
    assert loop.time() - start >= 0.9  # the pause itself, not a performance claim


async def test_429_exhausted_raises_rate_limit_error(fake: FakeRunComfy) -> None:
    """When 429s outlast their allowance, RateLimitError carries retry_after."""
    async with AsyncClient(
        TOKEN, fake.base_url, retry=FAST_RETRY.__class__(rate_limited_attempts=1)
    ) as client:
        fake.inject("status", status=429, headers={"Retry-After": "0"})
        with pytest.raises(RateLimitError) as info:
            await client.status("abc")
        assert info.value.retry_after == 0.0


async def test_wrong_token_is_authentication_error(fake: FakeRunComfy) -> None:
    """The emulator refuses a wrong token; the error never quotes it."""
    async with AsyncClient("wrong-token-xyz", fake.base_url, retry=FAST_RETRY) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.submit(T2I, {"prompt": "x"})
        assert "wrong-token-xyz" not in str(info.value) and "wrong-token-xyz" not in repr(
            info.value
        )
    assert fake.jobs_created == 0


async def test_redirect_not_followed(client: AsyncClient, fake: FakeRunComfy) -> None:
    """A redirect to another origin is not followed, so the token never goes there."""
    target = f"{fake.output_base_url}/outputs/x/0.png"
    fake.inject("status", status=302, headers={"Location": target}, body=b"")
    with pytest.raises(APIStatusError):
        await client.status("abc")
    assert fake.output_requests == 0


async def test_gather_many_jobs(client: AsyncClient, fake: FakeRunComfy) -> None:
    """Handles work with asyncio.gather; every job is created once and resolves."""
    jobs = [await client.submit(T2I, {"prompt": f"p{i}"}) for i in range(50)]
    results = await asyncio.gather(*jobs)
    assert {r.request_id for r in results} == {j.request_id for j in jobs}
    assert fake.jobs_created == 50 and fake.requests["submit"] == 50


async def test_close_is_clean(fake: FakeRunComfy, caplog: pytest.LogCaptureFixture) -> None:
    """Closing leaves no unclosed session, connector or pending task behind."""
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        async with AsyncClient(TOKEN, fake.base_url) as client:
            await client.run(T2I, {"prompt": "x"})
        del client
        gc.collect()
        await asyncio.sleep(0)
    messages = [str(w.message) for w in seen] + [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "Unclosed" in m or "was destroyed" in m]


async def test_client_only_usable_inside_async_with(fake: FakeRunComfy) -> None:
    """Calling the API on a client that is not open says how to use it."""
    client = AsyncClient(TOKEN, fake.base_url)
    with pytest.raises(RuntimeError, match="async with"):
        await client.submit(T2I, {"prompt": "x"})
