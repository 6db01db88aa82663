"""`selfguard export --format llama.cpp`: a control-vector GGUF that llama.cpp's loader reads as
our layers (`direction.l` is added to the output of decoder layer l; the runtime tests check
that convention against llama.cpp's hidden states). Needs no llama.cpp: the file is read back
with the gguf package, as llama.cpp's loader reads it."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

from selfguard_guardrails.cli import main
from selfguard_guardrails.errors import InvalidSettingError
from selfguard_guardrails.method.llama_cpp_export import export_control_vector
from selfguard_guardrails.method.vector import SteeringVector, with_recorded_setting
from selfguard_guardrails.settings import SteeringSetting


def tiny_vector() -> SteeringVector:
    generator = torch.Generator().manual_seed(0)
    directions = {layer: torch.randn(8, generator=generator) for layer in range(4)}
    return SteeringVector(directions=directions, model_fingerprint="f" * 16, num_layers=4, hidden_size=8)


def read_back(path) -> tuple[str, dict[int, np.ndarray]]:
    reader = gguf.GGUFReader(str(path))
    field = reader.fields["general.architecture"]
    architecture = bytes(field.parts[field.data[0]]).decode()
    return architecture, {int(t.name.split(".")[1]): np.array(t.data, dtype=np.float32) for t in reader.tensors}


def test_the_file_holds_each_layer_s_direction_under_its_own_index(tmp_path):
    vector = tiny_vector()
    exported = export_control_vector(vector, tmp_path / "cv.gguf", layers=(2, 3), strength=0.9)
    architecture, directions = read_back(exported.path)
    assert architecture == "controlvector" and sorted(directions) == [2, 3]
    for layer in (2, 3):
        assert np.allclose(directions[layer], vector.directions[layer].numpy())
    assert exported.options() == ["--control-vector-scaled", str(exported.path), "0.9",
                                  "--control-vector-layer-range", "2", "3"]


@pytest.mark.parametrize(("layers", "message"), [((0, 1), "layer 0 cannot be exported"),
                                                 ((5,), "no direction for layer"), ((), "at least one layer")])
def test_layers_llama_cpp_cannot_take_are_refused(tmp_path, layers, message):
    with pytest.raises(InvalidSettingError, match=message):
        export_control_vector(tiny_vector(), tmp_path / "cv.gguf", layers=layers, strength=1.0)


def test_the_command_exports_the_recorded_setting_and_prints_how_to_use_it(tmp_path, capsys):
    vector = with_recorded_setting(tiny_vector(), SteeringSetting(layers=(1, 2), strength=0.75, scope="all"))
    vector.save(tmp_path / "v.safetensors")
    assert main(["export", str(tmp_path / "v.safetensors"), "--format", "llama.cpp", "--out",
                 str(tmp_path / "cv.gguf")]) == 0
    shown = capsys.readouterr().out
    assert f"--control-vector-scaled {tmp_path / 'cv.gguf'} 0.75 --control-vector-layer-range 1 2" in shown
    assert "system message" in shown and "no awareness gate" in shown
    assert sorted(read_back(tmp_path / "cv.gguf")[1]) == [1, 2]


def test_a_vector_without_a_setting_needs_layers_and_strength(tmp_path, capsys):
    tiny_vector().save(tmp_path / "v.safetensors")
    assert main(["export", str(tmp_path / "v.safetensors"), "--format", "llama.cpp", "--out",
                 str(tmp_path / "cv.gguf")]) != 0
    assert "give --layers and --strength" in capsys.readouterr().err
