"""run_blocking: asyncio.run without formatting its result (asyncio.run wrote out a whole run's events)."""

from __future__ import annotations

import pytest

from halguru.blocking import run_blocking


class Large:
    formatted = 0

    def __repr__(self) -> str:
        Large.formatted += 1
        return "Large(" + "x" * 1_000_000 + ")"


async def answer() -> Large:
    return Large()


async def fail() -> None:
    raise ValueError("the coroutine's own error")


def test_the_result_comes_back_and_is_never_formatted() -> None:
    result = run_blocking(answer())
    assert isinstance(result, Large)
    assert Large.formatted == 0  # asyncio.run(answer()) formats it twice, restoring SIGINT's handler


def test_an_error_in_the_coroutine_is_raised_as_it_is() -> None:
    with pytest.raises(ValueError, match="the coroutine's own error"):
        run_blocking(fail())
