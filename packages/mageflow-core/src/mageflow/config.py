"""Settings of the signature store and lifecycle."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["MageflowConfig"]


class MageflowConfig(BaseModel):
    """Store and lifecycle settings; every field has a production-safe default.

    ``active_ttl`` slides forward on every transition, so a flow that keeps
    moving never expires; it only bounds how long an abandoned signature lingers.
    ``done_ttl`` applies once a signature is done, failed or canceled, so
    finished work can still be inspected for a while and then disappears.
    """

    model_config = ConfigDict(frozen=True)

    key_prefix: str = Field(default="mageflow:", min_length=1)
    active_ttl: timedelta = timedelta(days=7)
    done_ttl: timedelta = timedelta(days=1)
    lock_ttl: timedelta = timedelta(seconds=60)
    lock_wait: timedelta = timedelta(seconds=10)
    lock_poll_interval: timedelta = timedelta(milliseconds=20)
    store_retry_window: timedelta = timedelta(seconds=60)
    """How long a worker keeps retrying a store call that cannot reach Redis
    (connection lost or refused, ``LOADING``) before it leaves the run to the
    reconciler; never longer than the run's own deadline."""
    reconcile_after: timedelta = timedelta(minutes=5)
    """how long a claim or a begun run may go unheard of before the reconciler asks the engine"""
    reconcile_max_resends: int = Field(default=3, ge=0)
    """re-sends of a dispatch the engine does not know, before its signature fails"""
    reconcile_unknown_window: timedelta = timedelta(minutes=10)
    """How long a run the engine named may read as unknown to it before the
    reconciler takes it for lost, measured on Redis' clock from the first
    look that found it unknown. An engine's read side can lag behind the runs
    it starts (Hatchet's REST API answers from tables it writes
    asynchronously, tens of seconds behind under load): a begun run is left
    alone for this long, then fails; a claim's last re-send is not given up
    on before it either. Zero: no doubt, the first such look decides."""
    reconcile_batch: int = Field(default=1000, ge=1)
    """items per index per sweep (and run ids per run-status query)"""
    payload_threshold: int = Field(default=512 * 1024, ge=1)
    """Bytes of JSON above which a run input or result goes by reference: it is
    stored in Redis (``blob:<key>``) and the engine carries a small reference,
    resolved on the worker before validation. Well under Hatchet's 4 MB gRPC
    message limit by default."""
    results_chunk: int = Field(default=1000, ge=1)
    """Member results read per round trip when a swarm's result list is built
    on the worker."""

    @field_validator("key_prefix")
    @classmethod
    def _no_whitespace(cls, value: str) -> str:
        if any(c.isspace() for c in value):
            raise ValueError("must not contain whitespace")
        return value

    @field_validator("active_ttl", "done_ttl", "lock_ttl", "lock_wait", "store_retry_window")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value.total_seconds() <= 0:
            raise ValueError("must be a positive duration")
        return value

    @field_validator("reconcile_unknown_window")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value.total_seconds() < 0:
            raise ValueError("must not be a negative duration")
        return value
