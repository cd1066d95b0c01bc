"""Each admin change takes effect at the proxy within a bound, with nothing restarted.

The proxy decides from a view that follows the event stream. A grant, a revoked rule, a
removal from a group, a deactivated or removed member, a revoked token and a disabled
model must each change the answer to a real call soon after the admin's call returns. The bound
here is generous for a busy test machine; ``bench/propagation.py`` measures the delay.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from tests.e2e.flows import ReadyModel, ready_model
from tests.e2e.propagation import CASES, Case, Lab, delay
from tests.emulator import EmulatorState
from tests.stack import Stack
from tests.support import Workspace

pytestmark = pytest.mark.e2e

BOUND_SECONDS = 2.0


@pytest.fixture
async def lab(
    stack: Stack, workspace: Workspace, emulator: tuple[EmulatorState, str]
) -> AsyncIterator[Lab]:
    ready: ReadyModel = await ready_model(stack, workspace, emulator)
    async with httpx.AsyncClient(base_url=stack.openai_base_url, timeout=30) as proxy:
        yield Lab(workspace, ready.model, proxy)


@pytest.mark.parametrize("make_case", CASES, ids=lambda make: make.__name__)
async def test_change_reaches_the_proxy_within_the_bound(
    lab: Lab, make_case: Callable[[Lab], Awaitable[Case]]
) -> None:
    """The proxy's answer flips soon after the admin's call returns, and flips back after the
    opposite change, without a restart."""
    case = await make_case(lab)

    took = await delay(lab, case, within=BOUND_SECONDS)
    await case.restore()
    back = await lab.until(case.token(), case.before, within=BOUND_SECONDS)

    assert took < BOUND_SECONDS and back < BOUND_SECONDS, case.name
