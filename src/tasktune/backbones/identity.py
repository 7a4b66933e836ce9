"""What a backbone *is*, as hashes: adaptations are bound to it (a soft prompt made for one model
must not be loaded onto another), and results record it."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from tasktune.paths import cache_dir

# Config fields that change with the saving library or the load, not with the model.
_VOLATILE_CONFIG_KEYS = {
    "_name_or_path",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "quantization_config",
}
WEIGHT_SUFFIXES = (".safetensors",)


@dataclass(frozen=True)
class BackboneIdentity:
    name: str
    kind: str  # "causal" | "encoder"
    architecture: str
    hidden_size: int
    vocab_size: int
    num_layers: int
    num_parameters: int
    config_hash: str
    weights_hash: str
    tokenizer_hash: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> BackboneIdentity:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    def mismatches(self, other: BackboneIdentity) -> list[str]:
        """Human-readable differences that make an adaptation for one unusable on the other."""
        out = []
        for key in (
            "hidden_size",
            "vocab_size",
            "num_layers",
            "config_hash",
            "weights_hash",
            "tokenizer_hash",
        ):
            a, b = getattr(self, key), getattr(other, key)
            if a != b:
                out.append(f"{key}: {a} vs {b}")
        return out


def _sha256_json(data: object) -> str:
    return hashlib.sha256(
        json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()


def config_hash(config_dict: dict) -> str:
    return _sha256_json({k: v for k, v in config_dict.items() if k not in _VOLATILE_CONFIG_KEYS})


def tokenizer_hash(tokenizer) -> str:
    vocab = sorted(tokenizer.get_vocab().items())
    specials = {k: str(v) for k, v in sorted(getattr(tokenizer, "special_tokens_map", {}).items())}
    return _sha256_json({"vocab": vocab, "special": specials, "class": type(tokenizer).__name__})


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _cached_file_sha256(path: Path) -> str:
    """sha256 of a (large) file, memoised on disk by (path, size, mtime) so reloads stay fast."""
    st = path.stat()
    key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()
    memo = cache_dir() / "hashes" / f"{key}.json"
    try:
        data = json.loads(memo.read_text())
        if data["size"] == st.st_size and data["mtime_ns"] == st.st_mtime_ns:
            return data["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = file_sha256(path)
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}))
    os.replace(tmp, memo)
    return digest


def weights_hash(folder: Path) -> str:
    """sha256 over the sha256 of every weight file in the folder, by name."""
    files = sorted(p for p in folder.iterdir() if p.name.endswith(WEIGHT_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"no .safetensors weights in {folder}")
    return _sha256_json([(p.name, _cached_file_sha256(p)) for p in files])
