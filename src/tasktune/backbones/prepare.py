"""Turning an embedded backbone's files into a folder ``from_pretrained`` loads in about a second.

The GGUF route (``gguf_file=``) dequantises 272 tensors on every load (~20 s for SmolLM2); doing
it once and caching the float32 result as safetensors makes later loads take well under a second.
The cache folder is named after the backbone and the source file's size, and records the source's
sha256: a cache is reused only for the very file it was made from (a re-quantised GGUF of the same size
is converted again). It is written atomically (temporary folder, then rename) under a file lock, so an
interrupted conversion never leaves a half folder that looks complete and two processes starting at
once convert it once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tasktune.backbones.catalog import EmbeddedBackbone
from tasktune.backbones.identity import file_sha256
from tasktune.errors import BackboneError
from tasktune.fsutil import write_text_atomically
from tasktune.paths import cache_dir

log = logging.getLogger(__name__)
SOURCE_FILE = "tasktune-source.json"


def _cache_folder(backbone: EmbeddedBackbone, source: Path) -> Path:
    st = source.stat()
    return cache_dir() / "backbones" / f"{backbone.name}-{st.st_size}"


def _source_meta(backbone: EmbeddedBackbone, source: Path, sha256: str | None = None) -> dict:
    st = source.stat()
    return {
        "backbone": backbone.name,
        "source": str(source),
        "source_size": st.st_size,
        "source_mtime_ns": st.st_mtime_ns,
        "source_sha256": sha256 or file_sha256(source),
    }


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
    st = source.stat()
    if meta.get("source_size") != st.st_size:
        return None
    if meta.get("source_mtime_ns") == st.st_mtime_ns and meta.get("source") == str(source):
        return folder  # the same file, untouched since (hashing 100 MB on every load would cost ~0.3 s)
    # Touched, moved or reinstalled: the content decides, and an unchanged file is remembered as such.
    digest = file_sha256(source)
    if digest != meta.get("source_sha256"):
        log.info("%s: %s changed since it was converted; converting again", backbone.name, source)
        return None
    with contextlib.suppress(OSError):  # a read-only cache still works, it just hashes again next time
        write_text_atomically(marker, json.dumps(_source_meta(backbone, source, digest), indent=2))
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
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f".{target.name}.lock"):
        # Another process may have converted it while this one waited for the lock.
        existing = cached_folder(backbone)
        if existing is not None and not force:
            return existing
        log.info("converting %s once from GGUF to a cached safetensors folder %s", backbone.name, target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{backbone.name}-", dir=target.parent))
        try:
            _convert(source, tmp)
            (tmp / SOURCE_FILE).write_text(json.dumps(_source_meta(backbone, source), indent=2))
            for f in tmp.iterdir():
                with f.open("rb") as fh:
                    os.fsync(fh.fileno())
            _swap_in(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _convert(source: Path, out: Path) -> None:
    """Dequantise the GGUF at ``source`` and save model and tokenizer as a plain folder in ``out``."""
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
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _swap_in(tmp: Path, target: Path) -> None:
    """Put ``tmp`` at ``target``. An old folder (``--force``, or a stale cache) is renamed away first
    and removed after, so the window in which ``target`` is missing is two renames, not a whole rmtree."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes (POSIX ``flock``; without it, no lock)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: conversions may then run twice, still atomically
        yield
        return
    with path.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
