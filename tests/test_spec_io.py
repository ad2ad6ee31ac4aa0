"""The one strict spec reader: every spec refuses a bad file the same way, naming the file and the field."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pytest

from roboalign.models.action_head import ActionHeadConfig
from roboalign.models.vla_inputs import VLAInputSpec
from roboalign.spec.action_space import ActionSpace, get_action_space
from roboalign.spec.loader import SpecError, SpecNotFound, build, check_format, load_spec, read_spec_file
from roboalign.spec.normalization import NormStats
from roboalign.spec.prompts import PromptTemplate
from roboalign.spec.tasks import DEFAULT_TASKS, TaskSet


@dataclass(frozen=True)
class Inner:
    size: int
    names: tuple[str, ...] = ("a",)


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=lambda: Inner(size=3, names=("x", "y")))
    rate: float = 1.0

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError(f"rate must be > 0, got {self.rate}")


def test_build_nested_on_the_field_default_and_tuples():
    out = build(Outer, {"inner": {"names": ["p", "q"]}}, "cfg.yaml")
    assert out == Outer(inner=Inner(size=3, names=("p", "q")))  # size kept from the field's default
    assert isinstance(out.inner.names, tuple)


def test_build_names_the_source_and_the_field():
    with pytest.raises(SpecError, match=r"cfg.yaml: unknown fields \['rat'\]; valid fields: inner, rate"):
        build(Outer, {"rat": 2}, "cfg.yaml")
    with pytest.raises(SpecError, match=r"cfg.yaml.inner: unknown fields \['colour'\]; valid fields: size, names"):
        build(Outer, {"inner": {"colour": 1}}, "cfg.yaml")
    with pytest.raises(SpecError, match=r"x.json: missing field\(s\) \['size'\]"):
        build(Inner, {}, "x.json")
    with pytest.raises(SpecError, match="cfg.yaml: rate must be > 0, got -1"):
        build(Outer, {"rate": -1}, "cfg.yaml")
    with pytest.raises(SpecError, match="cfg.yaml: Outer must be a mapping"):
        build(Outer, [1], "cfg.yaml")


def test_read_and_format(tmp_path):
    with pytest.raises(SpecNotFound, match="norm stats file not found"):
        read_spec_file(tmp_path / "n.json", "norm stats file")
    assert issubclass(SpecNotFound, FileNotFoundError) and issubclass(SpecError, ValueError)
    (tmp_path / "bad.json").write_text("{\"a\": ")
    with pytest.raises(SpecError, match="bad.json: not valid JSON"):
        read_spec_file(tmp_path / "bad.json")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(SpecError, match="bad.yaml: not valid YAML"):
        read_spec_file(tmp_path / "bad.yaml")
    (tmp_path / "s.json").write_text(json.dumps({"format": "roboalign.thing/2", "x": 1}))
    with pytest.raises(SpecError, match=r"s.json: not a thing of this version \(format is 'roboalign.thing/2', "
                                        r"expected 'roboalign.thing/1'\)"):
        load_spec(tmp_path, "roboalign.thing/1", "s.json", "thing")
    assert load_spec(tmp_path / "s.json", "roboalign.thing/2") == ({"x": 1}, str(tmp_path / "s.json"))
    assert check_format({"y": 2}, "f/1", "src", required=False) == {"y": 2}


# Every spec saved beside a checkpoint refuses an unknown field through the same reader.
SPECS = [
    (lambda: ActionHeadConfig.tiny().to_dict(), ActionHeadConfig.from_dict),
    (lambda: VLAInputSpec().to_dict(), VLAInputSpec.from_dict),
    (lambda: PromptTemplate().to_dict(), PromptTemplate.from_dict),
    (lambda: get_action_space("eef_delta").to_dict(), ActionSpace.from_dict),
    (lambda: NormStats.from_data(np.arange(6.0).reshape(3, 2)).to_dict(), NormStats.from_dict),
    (lambda: DEFAULT_TASKS.to_dict(), TaskSet.from_dict),
]


@pytest.mark.parametrize("make,load", SPECS, ids=["head", "inputs", "prompt", "action_space", "norm", "tasks"])
def test_every_spec_roundtrips_and_refuses_unknown_fields(make, load):
    data = make()
    assert load(data).to_dict() == data
    with pytest.raises(ValueError, match=r"unknown fields \['bogus'\]; valid fields: "):
        load({**data, "bogus": 1})


def test_the_export_manifest_refuses_unknown_and_missing_fields():
    from roboalign.runtime.manifest import FORMAT, ManifestError, validate_manifest

    base = {"format": FORMAT, "modules": {}, "layout": {}, "specs": {}, "opset": 18, "parity": {}}
    with pytest.raises(ManifestError, match=r"m.json: unknown fields \['modles'\]; valid fields: format,"):
        validate_manifest({**base, "modles": {}}, source="m.json")
    with pytest.raises(ManifestError, match=r"m.json: missing field\(s\) \['parity'\]"):
        validate_manifest({k: v for k, v in base.items() if k != "parity"}, source="m.json")
