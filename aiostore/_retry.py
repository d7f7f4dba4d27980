"""One retry helper for every network driver, on tenacity.

A logical operation (one ``put``, one ``read`` with its resumes) makes at most ``max_attempts``
requests in all: its :class:`Attempts` budget is shared by every retried step of that operation,
so a resumed read that retries does not multiply the budget (``max_attempts²`` requests before).

The first attempt runs without tenacity — building a retry controller costs more CPU than a
small request's own client work — and tenacity takes over only once it failed, with full-jitter
exponential back-off, replaying that first failure so that its first wait follows it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity import wait_random_exponential as _wait

from .errors import BackendUnavailable

__all__ = ["Attempts", "RetryPolicy"]

T = TypeVar("T")

log = logging.getLogger("aiostore.retry")


class Attempts:
    """The request budget of one logical operation (see :meth:`RetryPolicy.attempts`)."""

    __slots__ = ("limit", "made")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.made = 0

    @property
    def left(self) -> int:
        return max(self.limit - self.made, 0)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded, jittered retries of transient failures.

    Args:
        max_attempts: requests one logical operation may make in all (1 = no retry).
        retryable: True for a failure worth another attempt (a reset, a 5xx, a timeout).
        base_delay: the back-off's multiplier in seconds.
        max_delay: the longest single wait.
        describe: turns a failure into log text (secrets scrubbed); ``str`` by default.
    """

    max_attempts: int
    retryable: Callable[[BaseException], bool]
    base_delay: float = 0.05
    max_delay: float = 2.0
    describe: Callable[[BaseException], str] = str

    def attempts(self) -> Attempts:
        """A fresh budget for one logical operation."""
        return Attempts(self.max_attempts)

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        budget: Attempts | None = None,
        what: str = "request",
        retryable: Callable[[BaseException], bool] | None = None,
    ) -> T:
        """``await fn()``, retried while the failure is retryable and the budget lasts.

        The last failure is re-raised as it is (the driver's error map translates it). A budget
        already spent (a resume after every attempt was made) raises ``BackendUnavailable``
        without a request.
        """
        budget = budget if budget is not None else Attempts(self.max_attempts)
        retryable = retryable or self.retryable
        if budget.left <= 0:
            raise BackendUnavailable(
                f"{what}: no attempt left (all {budget.limit} of this operation were made)"
            )
        budget.made += 1
        try:
            return await fn()
        except Exception as exc:
            if budget.left <= 0 or not retryable(exc):
                raise
            first: BaseException | None = exc

        async def attempt() -> T:
            nonlocal first
            if first is not None:
                exc, first = first, None
                raise exc
            budget.made += 1
            return await fn()

        def before_sleep(state: RetryCallState) -> None:
            outcome = state.outcome
            failure = outcome.exception() if outcome is not None else None
            log.info(
                "%s failed (attempt %d of %d: %s); retrying in %.2f s",
                what,
                budget.made,
                budget.limit,
                self.describe(failure) if failure is not None else "?",
                state.upcoming_sleep,
            )

        # The replayed first failure counts as tenacity's attempt 1: budget.left more follow.
        retrying = AsyncRetrying(
            stop=stop_after_attempt(budget.left + 1),
            wait=_wait(multiplier=self.base_delay, max=self.max_delay),
            retry=retry_if_exception(retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        return await retrying(attempt)
