"""R6/R7: every byte is hash-checked before use; pickles and other non-safetensors weights are
refused before they are read."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from tasktune.registry import IntegrityError, Registry, RegistryError
from tests.registry.conftest import save_prompt, save_soft_prompt, write_tar


class _MarkerPayload:
    """Unpickling this creates ``marker`` — proof that a pickle was executed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _pickle_bytes(marker: Path) -> bytes:
    return pickle.dumps(_MarkerPayload(marker))


def _writable(path: Path) -> Path:
    path.chmod(0o644)
    return path


def test_the_planted_payload_really_executes_when_unpickled(tmp_path):
    probe = tmp_path / "probe-marker"
    pickle.loads(_pickle_bytes(probe))  # the control: our payload is live
    assert probe.exists()


def test_flipped_byte_is_refused_naming_the_file(registry: Registry):
    save_soft_prompt(registry)
    weights = _writable(registry.root / "artifacts/sentiment/v1/weights.safetensors")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"weights\.safetensors: sha256 mismatch"):
        registry.load("sentiment", 1)
    [problem] = registry.verify()
    assert "sentiment v1" in problem and "weights.safetensors" in problem


def test_truncated_file_and_edited_manifest_are_refused(registry: Registry):
    save_soft_prompt(registry)
    save_prompt(registry)
    weights = _writable(registry.root / "artifacts/sentiment/v1/weights.safetensors")
    weights.write_bytes(weights.read_bytes()[:-4])
    with pytest.raises(IntegrityError, match="manifest says"):
        registry.load("sentiment", 1)
    manifest = _writable(registry.root / "artifacts/sentiment/v2/manifest.json")
    manifest.write_text(manifest.read_text().replace("prompting", "promptinG"))
    with pytest.raises(IntegrityError, match=r"manifest\.json: sha256 differs from the registry record"):
        registry.load("sentiment", 2)
    assert len(registry.verify()) == 2


def test_missing_file_is_refused(registry: Registry):
    save_soft_prompt(registry)
    (registry.root / "artifacts/sentiment/v1/weights.safetensors").unlink()
    with pytest.raises(IntegrityError, match=r"missing: \['weights.safetensors'\]"):
        registry.load("sentiment", 1)


@pytest.mark.parametrize(
    "name", ["model.pkl", "adapter_model.bin", "weights.pt", "x.pth", "last.ckpt", "w.npy"]
)
def test_planted_pickle_is_refused_before_it_is_read(registry: Registry, tmp_path, name):
    save_soft_prompt(registry)
    marker = tmp_path / "marker"
    (registry.root / "artifacts/sentiment/v1" / name).write_bytes(_pickle_bytes(marker))
    with pytest.raises(IntegrityError, match=r"only \.json and \.safetensors"):
        registry.load("sentiment", 1)
    assert any(name in p for p in registry.verify())
    with pytest.raises(IntegrityError):
        registry.export("sentiment", 1, tmp_path / "out.tar.gz")
    assert not marker.exists()


def test_pickle_disguised_as_safetensors_is_refused(registry: Registry, tmp_path):
    save_soft_prompt(registry)
    marker = tmp_path / "marker"
    weights = _writable(registry.root / "artifacts/sentiment/v1/weights.safetensors")
    weights.write_bytes(_pickle_bytes(marker))
    with pytest.raises(IntegrityError):
        registry.load("sentiment", 1)
    assert registry.verify() and not marker.exists()


def test_unlisted_json_file_is_refused(registry: Registry):
    save_prompt(registry)
    (registry.root / "artifacts/sentiment/v1/extra.json").write_text("{}")
    with pytest.raises(IntegrityError, match=r"extra\.json: unexpected file"):
        registry.load("sentiment", 1)


def _archive_with(tmp_path: Path, members: dict[str, bytes], manifest: bytes) -> Path:
    return write_tar(tmp_path / "evil.tar.gz", {"manifest.json": manifest, **members})


def test_import_refuses_pickle_members_and_bad_hashes(registry: Registry, tmp_path):
    save_soft_prompt(registry)
    manifest = (registry.root / "artifacts/sentiment/v1/manifest.json").read_bytes()
    weights = (registry.root / "artifacts/sentiment/v1/weights.safetensors").read_bytes()
    marker = tmp_path / "marker"
    cases = {
        "pickle member": {"weights.safetensors": weights, "model.pkl": _pickle_bytes(marker)},
        "pickle in place of weights": {"weights.safetensors": _pickle_bytes(marker)},
        "flipped byte": {"weights.safetensors": weights[:-1] + bytes([weights[-1] ^ 1])},
        "missing weights": {},
    }
    for label, members in cases.items():
        with pytest.raises(RegistryError):
            registry.import_archive(_archive_with(tmp_path, members, manifest))
        assert [i.version for i in registry.list()] == [1], label
        assert not any(registry.tmp_dir.iterdir()), label
    assert not marker.exists()
    ok = _archive_with(tmp_path, {"weights.safetensors": weights}, manifest)
    assert registry.import_archive(ok) == ("sentiment", 2)  # the control: a clean archive imports


def test_no_code_path_can_unpickle():
    package = Path(__file__).parents[2] / "src/tasktune/registry"
    source = "".join(p.read_text() for p in package.glob("*.py"))
    assert "load_file" in source  # the scan does read the real sources
    for forbidden in ("torch.load", "import pickle", "pickle.load", "numpy.load", "eval(", "exec("):
        assert forbidden not in source
