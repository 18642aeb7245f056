"""Issue 11.5: task registration on the Hatchet client fails loudly (no engine needed).

A Hatchet client is built offline from a hand-made token: registering tasks
and applying per-task options never talks to the engine. What the options do
at run time is proven on the real engine in tests/e2e/test_signatures.py.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from hatchet_sdk import ClientConfig, Context, Hatchet
from mageflow import ConfigurationError, MageflowValidationError
from mageflow_hatchet import Mageflow
from mageflow_hatchet._wrap import flags_of

pytestmark = pytest.mark.unit


def _b64(data: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture
def mf() -> Any:
    claims = {
        "sub": "707d0855-80ab-4e1f-a156-f1c4546cbf52",
        "server_url": "http://127.0.0.1:1",
        "grpc_broadcast_address": "127.0.0.1:1",
    }
    token = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}.sig"
    hatchet = Hatchet(config=ClientConfig(token=token, tls_config={"strategy": "none"}))
    return Mageflow(hatchet, "redis://127.0.0.1:1/0")


def test_registering_a_task_name_twice_raises(mf: Any) -> None:
    @mf.task(name="dup")
    async def first(msg: Any) -> None: ...

    with pytest.raises(MageflowValidationError, match="dup") as info:

        @mf.task(name="dup")
        async def second(msg: Any) -> None: ...

    assert info.value.field == "name"


def test_options_work_above_or_below_mf_task(mf: Any) -> None:
    @mf.task(name="below")
    @mf.with_ctx
    @mf.with_signature
    @mf.stagger_execution(timedelta(seconds=2))
    async def below(msg: Any, ctx: Context, signature: Any) -> None: ...

    @mf.with_ctx
    @mf.with_signature
    @mf.stagger_execution(timedelta(seconds=2))
    @mf.task(name="above")
    async def above(msg: Any, ctx: Context, signature: Any) -> None: ...

    for task in (below, above):
        flags = flags_of(task)
        assert flags.with_ctx and flags.with_signature
        assert flags.stagger == timedelta(seconds=2)


def test_options_on_a_task_not_registered_by_mageflow_raise(mf: Any) -> None:
    @mf.hatchet.task(name="plain-hatchet")
    async def plain(msg: Any, ctx: Context) -> None: ...

    with pytest.raises(ConfigurationError, match=r"mf\.task"):
        mf.with_ctx(plain)


async def test_a_stopping_worker_writes_the_run_ids_it_held_back(
    mf: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed: list[bool] = []

    async def flush() -> None:
        flushed.append(True)

    monkeypatch.setattr(mf.runtime, "flush", flush)
    worker = mf.worker("w", recover_every=None)
    lifespan = worker._lifespan()
    await lifespan.__anext__()
    assert flushed == []
    with pytest.raises(StopAsyncIteration):
        await lifespan.__anext__()
    assert flushed == [True]
