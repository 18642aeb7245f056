"""Payload references at the engine seam (issue 10): recognised, passed by Hatchet."""

from __future__ import annotations

from mageflow import SwarmResults
from mageflow._store.codec import REF
from mageflow.engine import REFERENCE_TAG, holds_reference
from mageflow_hatchet._payloads import lenient
from pydantic import BaseModel, TypeAdapter
from thirdmagic import ReturnValue


class Totals(BaseModel):
    totals: ReturnValue[list[int]]
    tag: str


def test_holds_reference_whole_input_or_one_field() -> None:
    assert holds_reference({REFERENCE_TAG: {"kind": "blob", "key": "task-1", "f": "in"}, "n": 1})
    assert holds_reference({"totals": {REFERENCE_TAG: {"kind": "swarm", "key": "s"}}, "tag": "x"})
    assert not holds_reference({"totals": [1, 2], "tag": "x"})
    assert not holds_reference({"totals": [{REFERENCE_TAG: "blob"}]})  # only whole fields
    assert not holds_reference(None)


def test_codec_names_match_the_engine_contract_and_swarm_results_aliases() -> None:
    assert REF.tag == REFERENCE_TAG
    ref = {REF.tag: {REF.kind: REF.swarm, REF.key: "swarm-1", REF.count: 5}}
    assert SwarmResults.model_validate(ref) == SwarmResults(swarm_key="swarm-1", count=5)


def test_lenient_validator_passes_references_as_dicts_and_validates_the_rest() -> None:
    adapter: TypeAdapter[Totals] = TypeAdapter(lenient(Totals))
    ref = {"totals": {REFERENCE_TAG: {"kind": "swarm", "key": "s", "n": 3}}, "tag": "x"}
    assert adapter.validate_python(ref) == ref
    assert adapter.validate_python({"totals": [1], "tag": "x"}) == Totals(totals=[1], tag="x")
    assert adapter.dump_python(Totals(totals=[1], tag="x")) == {"totals": [1], "tag": "x"}
