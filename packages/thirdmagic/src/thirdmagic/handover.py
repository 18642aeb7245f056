"""Handing signatures built with thirdmagic alone to a MageFlow process.

A service that depends only on ``thirdmagic`` (no Redis, no engine) builds
signatures, chains and swarms as plain objects, wraps the top one in a
:class:`FlowSpec` and sends ``spec.to_json()`` anywhere (an HTTP response, a
queue message). A process running MageFlow stores and runs it with
``await mageflow.submit(spec_or_json)``::

    receipt = TaskSignature(task_name="email-receipt", kwargs={"email": "ada@example.com"})
    payment = TaskSignature(task_name="process-payment", success_callbacks=[receipt])
    body = FlowSpec.of(payment).to_json()

Everything in a spec is JSON: input models travel as import paths.
"""

from __future__ import annotations

from typing import Any, cast

from pydantic import Field, ValidationError, model_validator

from thirdmagic.errors import MageflowValidationError
from thirdmagic.signature import (
    AnySignature,
    ChainSignature,
    Signature,
    SwarmSignature,
    _MageflowModel,
    validation_error,
)

__all__ = ["FlowSpec"]


def references(sig: Signature) -> list[str]:
    """Keys ``sig`` refers to: its callbacks and, for a container, its members."""
    refs = [*sig.success_callbacks, *sig.error_callbacks]
    if isinstance(sig, (ChainSignature, SwarmSignature)):
        refs += sig.tasks
    return refs


class FlowSpec(_MageflowModel):
    """A signature plus every not-yet-stored signature it refers to.

    ``signatures`` lists each one once, those referred to before those that
    refer to them. A reference to a key that is not in the spec must already
    be stored where the spec is submitted.
    """

    root: str = Field(description="Key of the signature the flow starts from.")
    signatures: list[AnySignature] = Field(min_length=1)
    swarm_members: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Member keys of each swarm in the spec, in admission order.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> FlowSpec:
        keys = [s.key for s in self.signatures]
        seen: set[str] = set()
        for i, key in enumerate(keys):
            if key in seen:
                raise MageflowValidationError(
                    f"signatures.{i}.key: {key!r} appears twice in the spec",
                    field=f"signatures.{i}.key",
                )
            seen.add(key)
        if self.root not in seen:
            raise MageflowValidationError(
                f"root: {self.root!r} is not the key of a signature in the spec", field="root"
            )
        swarms = {s.key for s in self.signatures if isinstance(s, SwarmSignature)}
        for key in self.swarm_members:
            if key not in swarms:
                raise MageflowValidationError(
                    f"swarm_members.{key}: {key!r} is not a swarm in the spec",
                    field=f"swarm_members.{key}",
                )
        return self

    @classmethod
    def of(cls, root: Signature) -> FlowSpec:
        """The spec of ``root`` and every signature object attached to it, recursively."""
        ordered: list[Signature] = []
        placed: set[str] = set()
        members: dict[str, list[str]] = {}
        visiting: set[str] = set()

        def visit(sig: Signature) -> None:
            if sig.key in placed:
                return
            if sig.key in visiting:
                raise MageflowValidationError(
                    f"signatures: {sig.key!r} refers back to itself through its callbacks "
                    "or members",
                    field="signatures",
                )
            visiting.add(sig.key)
            for child in sig._attached.values():
                visit(child)
            visiting.discard(sig.key)
            if isinstance(sig, SwarmSignature) and sig.tasks:
                members[sig.key] = list(sig.tasks)
            ordered.append(sig)
            placed.add(sig.key)

        visit(root)
        # every Signature is one of the three kinds AnySignature names
        return cls(root=root.key, signatures=cast(list[Any], ordered), swarm_members=members)

    def root_signature(self) -> Signature:
        return next(s for s in self.signatures if s.key == self.root)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, data: str | bytes) -> FlowSpec:
        """Parse a spec; a malformed one raises MageflowValidationError naming the field."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise validation_error(exc) from exc

    @classmethod
    def parse(cls, data: Any) -> FlowSpec:
        """A spec from a spec, a signature, JSON text or the dict form of a spec."""
        if isinstance(data, FlowSpec):
            return data
        if isinstance(data, Signature):
            return cls.of(data)
        if isinstance(data, (str, bytes)):
            return cls.from_json(data)
        if isinstance(data, dict):
            try:
                return cls.model_validate(data)
            except ValidationError as exc:
                raise validation_error(exc) from exc
        raise MageflowValidationError(
            f"spec: expected a FlowSpec, a signature, JSON text or a dict, got "
            f"{type(data).__name__}",
            field="spec",
        )
