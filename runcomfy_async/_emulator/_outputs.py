"""The emulator's output host: small real PNGs on their own origin, optionally slow-dripped.

The output listener is a different origin from the API, as RunComfy's CDN is. A correct client
never sends its token here, so every ``Authorization`` header that arrives is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Mapping

from aiohttp import web

from ._faults import Faults
from ._http import error_response
from ._jobs import SUCCEEDED, FakeJob
from ._png import output_png

__all__ = ["OutputHost"]


class OutputHost:
    """Serves ``GET /outputs/{request_id}/{index}.png`` for succeeded jobs.

    Args:
        jobs: the job store, by request id.
        faults: canned answers (endpoint ``"output"``) and random faults.
        drip: seconds between single bytes of a dripped body; ``None`` serves at once.
        drip_count: how many output requests drip (the first ones); ``None`` for all.

    Attributes:
        requests: requests to the output listener.
        auth_headers: requests that carried an ``Authorization`` header.
        responses: answers by HTTP status; resets count as status 0.
        drips: requests answered slowly, a byte at a time.
    """

    def __init__(
        self,
        *,
        jobs: Mapping[str, FakeJob],
        faults: Faults,
        drip: float | None,
        drip_count: int | None,
    ):
        self._jobs = jobs
        self._faults = faults
        self._drip = drip
        self._drip_left = drip_count
        self.requests = 0
        self.auth_headers = 0
        self.responses: Counter[int] = Counter()
        self.drips = 0

    def app(self) -> web.Application:
        """A fresh aiohttp application for the output listener."""
        app = web.Application()
        app.router.add_get(r"/outputs/{request_id}/{index:\d+}.png", self._on_output)
        app.router.add_route("*", "/{tail:.*}", self._on_unknown)
        return app

    def _count(self, request: web.Request) -> None:
        self.requests += 1
        if "Authorization" in request.headers:
            self.auth_headers += 1

    def _should_drip(self) -> bool:
        if self._drip is None:
            return False
        if self._drip_left is None:
            return True
        if self._drip_left <= 0:
            return False
        self._drip_left -= 1
        return True

    async def _on_output(self, request: web.Request) -> web.StreamResponse:
        self._count(request)
        counter = self.responses
        script = self._faults.next_script("output")
        if script is not None:
            return await self._faults.play(script, request, self.image, counter)
        response = await self.image(request)
        if response.status == 200 and self._should_drip():
            self.drips += 1
            counter[200] += 1
            return await self._dripped(request, response)
        if self._faults.applies("output"):
            return await self._faults.serve(request, self.image, counter)
        counter[response.status] += 1
        return response

    async def _dripped(self, request: web.Request, full: web.Response) -> web.StreamResponse:
        """Send ``full``'s body one byte at a time, ``drip`` seconds apart."""
        body = full.body
        assert isinstance(body, bytes) and self._drip is not None
        stream = web.StreamResponse(status=200)
        stream.content_type = full.content_type
        stream.content_length = len(body)
        with contextlib.suppress(ConnectionError):  # the client gave up: that is its right
            await stream.prepare(request)
            for i in range(len(body)):
                if i:
                    await asyncio.sleep(self._drip)
                await stream.write(body[i : i + 1])
            await stream.write_eof()
        return stream

    async def image(self, request: web.Request) -> web.Response:
        """``GET /outputs/{id}/{i}.png``: a small real PNG.

        Args:
            request: the HTTP request.

        Returns:
            200 ``image/png``, or 404 unless the job succeeded and has output ``i``.
        """
        job = self._jobs.get(request.match_info["request_id"])
        index = int(request.match_info["index"])
        if job is None or index >= job.num_images or job.state != SUCCEEDED:
            return error_response(404, 404001, "output not found")
        return web.Response(body=output_png(job.request_id, index), content_type="image/png")

    async def _on_unknown(self, request: web.Request) -> web.StreamResponse:
        self._count(request)
        self.responses[404] += 1
        return error_response(404, 404001, "not found")
