"""The seam between signature models and whatever persists and runs them.

``thirdmagic`` has no I/O. The async methods on signatures (``aio_run_no_wait``,
``suspend``, ``kwargs.aupdate`` ...) delegate to the backend installed here;
``mageflow`` installs one when it is configured. A service that only builds
signatures as data never needs one.

There is one place that says which backend is active: a context variable,
falling back to a process-wide default. ``set_backend`` sets the default
(``mageflow.configure`` and a new ``Mageflow`` client do); ``use_backend``
overrides it for the current context only (an asyncio task and what it
starts), so several runtimes can live in one process.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

from thirdmagic.errors import ConfigurationError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from thirdmagic.outcome import ContainerProgress
    from thirdmagic.signature import Signature
    from thirdmagic.status import LifecycleEvent, TaskStatus

__all__ = ["SignatureBackend", "current_backend", "get_backend", "set_backend", "use_backend"]


class SignatureBackend(Protocol):
    async def run(
        self, signature: Signature, msg: BaseModel | dict[str, Any] | None, options: dict[str, Any]
    ) -> None: ...

    async def add_callbacks(
        self, signature: Signature, success: list[str], errors: list[str]
    ) -> None: ...

    async def remove(self, key: str, *, with_error: bool, with_success: bool) -> None: ...

    async def apply(self, key: str, event: LifecycleEvent) -> TaskStatus: ...

    async def update_kwargs(self, key: str, values: dict[str, Any]) -> None: ...

    async def swarm_add(
        self, signature: Signature, tasks: Any, msgs: Sequence[Any] | None
    ) -> list[str]: ...

    async def swarm_close(self, key: str) -> None: ...

    async def result(self, key: str, timeout: float | None) -> Any: ...

    async def cancel(self, key: str, *, error_callbacks: bool) -> TaskStatus: ...

    async def retry(self, key: str) -> TaskStatus: ...

    async def clone(self, signature: Signature, changes: dict[str, Any]) -> Signature: ...

    async def progress(self, key: str) -> ContainerProgress: ...


_process_default: SignatureBackend | None = None
_active: ContextVar[SignatureBackend | None] = ContextVar("thirdmagic_backend", default=None)


def set_backend(backend: SignatureBackend | None) -> None:
    """Make ``backend`` the process-wide default (``None`` clears it)."""
    global _process_default
    _process_default = backend


def current_backend() -> SignatureBackend | None:
    """The backend active here: this context's override, else the process default."""
    return _active.get() or _process_default


@contextmanager
def use_backend(backend: SignatureBackend) -> Iterator[SignatureBackend]:
    """Make ``backend`` the active one inside the block, in this context only."""
    token = _active.set(backend)
    try:
        yield backend
    finally:
        _active.reset(token)


def get_backend() -> SignatureBackend:
    backend = current_backend()
    if backend is None:
        raise ConfigurationError(
            "no signature backend is configured: install mageflow-core and call "
            "mageflow.configure(...) (or create a Mageflow client) before running signatures"
        )
    return backend
