"""Turning an embedded backbone's files into a folder ``from_pretrained`` loads in about a second.

The GGUF route (``gguf_file=``) dequantises 272 tensors on every load (~20 s for SmolLM2); doing
it once and caching the float32 result as safetensors makes later loads take well under a second.
The cache folder is named after the source file's hash and written atomically (temporary folder,
then rename), so an interrupted conversion never leaves a half folder that looks complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from tasktune.backbones.catalog import EmbeddedBackbone
from tasktune.backbones.identity import file_sha256
from tasktune.errors import BackboneError
from tasktune.paths import cache_dir

log = logging.getLogger(__name__)
SOURCE_FILE = "tasktune-source.json"


def _cache_folder(backbone: EmbeddedBackbone, source: Path) -> Path:
    st = source.stat()
    return cache_dir() / "backbones" / f"{backbone.name}-{st.st_size}"


def cached_folder(backbone: EmbeddedBackbone) -> Path | None:
    """The ready folder for ``backbone``, or None if it still needs :func:`prepare`."""
    if backbone.gguf_file is None:
        return backbone.source_path()
    source = backbone.source_path()
    folder = _cache_folder(backbone, source)
    marker = folder / SOURCE_FILE
    if not marker.is_file():
        return None
    try:
        meta = json.loads(marker.read_text())
    except ValueError:
        return None
    if meta.get("source_size") != source.stat().st_size:
        return None
    return folder


def prepare(backbone: EmbeddedBackbone, *, force: bool = False) -> Path:
    """Make sure the backbone has a loadable folder; convert GGUF → safetensors once if needed."""
    if backbone.gguf_file is None:
        return backbone.source_path()
    existing = cached_folder(backbone)
    if existing is not None and not force:
        return existing
    source = backbone.source_path()
    target = _cache_folder(backbone, source)
    log.info("converting %s once from GGUF to a cached safetensors folder %s", backbone.name, target)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(
            source.parent, gguf_file=source.name, dtype=torch.float32
        )
    except Exception as err:  # gguf missing, corrupt file, unsupported architecture
        raise BackboneError(f"cannot read {source} as GGUF: {err}") from err
    # A model loaded from GGUF is marked quantised and refuses save_pretrained; rebuild a plain one
    # from the same config (without the quantisation entry) and hand it the dequantised tensors.
    config_dict = model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    config = type(model.config).from_dict(config_dict)
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict(), assign=True)
    plain.tie_weights()

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{backbone.name}-", dir=target.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        meta = {
            "backbone": backbone.name,
            "source": str(source),
            "source_size": source.stat().st_size,
            "source_sha256": file_sha256(source),
        }
        (tmp / SOURCE_FILE).write_text(json.dumps(meta, indent=2))
        for f in tmp.iterdir():
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
