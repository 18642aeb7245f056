"""The seam between signature models and whatever persists and runs them.

``thirdmagic`` has no I/O. The async methods on signatures (``aio_run_no_wait``,
``suspend``, ``kwargs.aupdate`` ...) delegate to the backend installed here;
``mageflow`` installs one when it is configured. A service that only builds
signatures as data never needs one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from thirdmagic.errors import ConfigurationError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from thirdmagic.outcome import ContainerProgress
    from thirdmagic.signature import Signature
    from thirdmagic.status import LifecycleEvent, TaskStatus

__all__ = ["SignatureBackend", "get_backend", "set_backend"]


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


_backend: SignatureBackend | None = None


def set_backend(backend: SignatureBackend | None) -> None:
    global _backend
    _backend = backend


def get_backend() -> SignatureBackend:
    if _backend is None:
        raise ConfigurationError(
            "no signature backend is configured: install mageflow-core and call "
            "mageflow.configure(...) (or create a Mageflow client) before running signatures"
        )
    return _backend
