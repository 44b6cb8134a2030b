"""The emulated account: its credentials (valid, revoked, restored) and its balance.

:class:`Account` decides, per API request, whether the credentials are accepted, and, per
submit, whether the balance can pay for one more job. Its answers follow PROTOCOL.md §7:
401/401001 (or HTTP 400 with 400004) for bad credentials, 400002 (or HTTP 402) for an empty
balance.
"""

from __future__ import annotations

import hmac
from typing import Literal

from aiohttp import web

from ._http import error_response

__all__ = ["Account", "AuthError", "BalanceError"]

AuthError = Literal["401", "400004"]
"""How a credentials failure is answered: HTTP 401 with error code 401001, or HTTP 400 with
error code 400004 (UserAccountError)."""

BalanceError = Literal["400002", "402"]
"""How an empty balance is answered: HTTP 400 with error code 400002 (InsufficientResources),
or HTTP 402 with error code 402001."""


class Account:
    """Credentials and balance of the one account the emulator serves.

    Args:
        token: the accepted token; ``None`` accepts any ``Authorization: Bearer <non-empty>``.
        auth_error: how a credentials failure is answered.
        revoke_after: revoke the token once this many API requests were authorized (``None``:
            never by itself).
        balance: how many more jobs the account can pay for (``None``: unlimited).
        balance_error: how a submit beyond the balance is answered.

    Attributes:
        balance: jobs the account can still pay for, or ``None`` for unlimited.
        authorized: API requests whose credentials were accepted.
        auth_refusals: API requests refused for their credentials.
        balance_refusals: submits refused for an empty balance.
    """

    def __init__(
        self,
        *,
        token: str | None,
        auth_error: AuthError,
        revoke_after: int | None,
        balance: int | None,
        balance_error: BalanceError,
    ):
        self._auth = None if token is None else f"Bearer {token}".encode()
        self._auth_error = auth_error
        self._revoke_at = revoke_after
        self._revoked = False
        self._balance_error = balance_error
        self.balance = balance
        self.authorized = 0
        self.auth_refusals = 0
        self.balance_refusals = 0

    # ----------------------------------------------------------------------------- credentials

    @property
    def revoked(self) -> bool:
        """Whether the token is revoked now (every API call is refused)."""
        if not self._revoked and self._revoke_at is not None and self.authorized >= self._revoke_at:
            self._revoked = True
        return self._revoked

    def revoke(self, after: int = 0) -> None:
        """Revoke the token now, or after ``after`` more authorized API requests.

        Args:
            after: authorized requests still allowed before the revocation, ``>= 0``.

        Raises:
            ValueError: ``after`` is negative.
        """
        if after < 0:
            raise ValueError(f"after must be >= 0, got {after}")
        if after == 0:
            self._revoked = True
        else:
            self._revoke_at = self.authorized + after

    def restore(self) -> None:
        """Make the token valid again and cancel any pending ``revoke_after``."""
        self._revoked = False
        self._revoke_at = None

    def accepts(self, request: web.Request) -> bool:
        """Whether the request's credentials are accepted now (counts nothing).

        Args:
            request: the API request.

        Returns:
            ``False`` when revoked, when the header is missing, or when it is not the token.
        """
        if self.revoked:
            return False
        got = request.headers.get("Authorization")
        if got is None:
            return False
        if self._auth is None:
            scheme, _, credentials = got.partition(" ")
            return scheme.lower() == "bearer" and bool(credentials.strip())
        return hmac.compare_digest(got.encode(), self._auth)

    def check(self, request: web.Request) -> web.Response | None:
        """Check and count one API request's credentials.

        Args:
            request: the API request.

        Returns:
            ``None`` when accepted, else the refusal to send.
        """
        if self.accepts(request):
            self.authorized += 1
            return None
        self.auth_refusals += 1
        if self._auth_error == "400004":
            return error_response(
                400, 400004, "UserAccountError: missing, expired or revoked token"
            )
        return error_response(401, 401001, "Unauthorized: missing or invalid API token")

    # --------------------------------------------------------------------------------- balance

    def top_up(self, jobs: int) -> None:
        """Add room for ``jobs`` more jobs to a limited balance.

        Args:
            jobs: how many jobs to add, ``>= 1``.

        Raises:
            ValueError: ``jobs`` < 1, or the balance is unlimited (``balance=None``).
        """
        if jobs < 1:
            raise ValueError(f"top_up needs a positive number of jobs, got {jobs}")
        if self.balance is None:
            raise ValueError("the balance is unlimited (balance=None); nothing to top up")
        self.balance += jobs

    def charge(self) -> web.Response | None:
        """Pay for one job, or refuse when the balance is empty.

        Returns:
            ``None`` when paid (the balance drops by one), else the refusal to send.
        """
        if self.balance is None:
            return None
        if self.balance > 0:
            self.balance -= 1
            return None
        self.balance_refusals += 1
        if self._balance_error == "402":
            return error_response(402, 402001, "Payment Required: insufficient balance")
        return error_response(400, 400002, "InsufficientResources: no remaining balance")
