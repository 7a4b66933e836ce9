"""Loading a backbone by embedded name, local folder or (when allowed) hub id.

Offline and safe by default: ``local_files_only`` unless the user allows the hub, never
``trust_remote_code``, weights from safetensors only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tasktune.backbones import identity as ident
from tasktune.backbones.catalog import Kind, get_embedded
from tasktune.backbones.device import DeviceChoice, resolve_device
from tasktune.backbones.prepare import prepare
from tasktune.errors import BackboneError

log = logging.getLogger(__name__)
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


# Encoders whose position ids are offset by the padding index, as RoBERTa's are.
_PADDED_POSITIONS = {"camembert", "longformer", "data2vec-text", "xmod"}


@dataclass
class Backbone:
    """A loaded, frozen-by-default model with its tokenizer, identity and device choice."""

    name: str
    kind: Kind
    model: torch.nn.Module
    tokenizer: object
    identity: ident.BackboneIdentity
    device: DeviceChoice
    path: Path
    load_seconds: float = 0.0
    extras: dict = field(default_factory=dict)

    @property
    def hidden_size(self) -> int:
        return self.identity.hidden_size

    def input_limit(self, wanted: int, reserved: int = 0) -> int:
        """Tokens an input may have: what a route asks for, within the model's position table less the
        positions ``reserved`` for other inputs (a soft prompt's vectors); an input past the table would
        not be cut but crash the model."""
        config = self.model.config
        table = getattr(config, "max_position_embeddings", None)
        limits = [wanted]
        if table:
            if (
                "roberta" in (getattr(config, "model_type", "") or "")
                or config.model_type in _PADDED_POSITIONS
            ):
                # Position ids start after the padding index (RoBERTa's 514 positions hold 512 tokens).
                table -= (getattr(config, "pad_token_id", None) or 0) + 1
            limits.append(int(table) - reserved)
        told = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(told, int) and told < 1_000_000:  # the tokenizer's own limit, when it states one
            limits.append(told - reserved)
        return max(1, min(limits))


def infer_kind(config) -> Kind:
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith(_CAUSAL_SUFFIXES) for a in archs) or getattr(config, "is_decoder", False):
        return "causal"
    return "encoder"


def resolve_folder(name_or_path: str, *, allow_hub: bool = False) -> tuple[str, Path]:
    """(display name, local folder) for an embedded name, a local path or an allowed hub id."""
    embedded = get_embedded(name_or_path)
    if embedded is not None:
        return embedded.name, prepare(embedded)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BackboneError(f"{path} is a folder but has no config.json: not a transformers model folder")
        return path.name, path
    if path.exists():
        raise BackboneError(f"{path} is a file; give a model folder, an embedded name or a hub id")
    if not allow_hub:
        from tasktune.backbones.catalog import EMBEDDED

        raise BackboneError(
            f"unknown backbone {name_or_path!r}: not an embedded backbone ({', '.join(EMBEDDED)}) "
            "nor a local "
            "folder. To download a hub model, allow the hub explicitly (--allow-hub)."
        )
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            name_or_path, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]
        )
    except Exception as err:
        raise BackboneError(f"cannot download {name_or_path!r} from the hub: {err}") from err
    return name_or_path, Path(folder)


def load_backbone(name_or_path: str, *, device: str | None = None, allow_hub: bool = False) -> Backbone:
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    name, folder = resolve_folder(name_or_path, allow_hub=allow_hub)
    choice = resolve_device(device)
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        kind = infer_kind(config)
        auto = AutoModelForCausalLM if kind == "causal" else AutoModel
        model = auto.from_pretrained(
            folder, dtype=torch.float32, local_files_only=True, trust_remote_code=False, use_safetensors=True
        )
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise BackboneError(f"cannot load backbone {name!r} from {folder}: {err}") from err
    model.eval().requires_grad_(False).to(choice.device)
    if tokenizer.pad_token is None:
        # Causal LMs often ship without a pad token; padding is masked, so EOS is a safe stand-in.
        tokenizer.pad_token = tokenizer.eos_token
    cfg = model.config
    identity = ident.BackboneIdentity(
        name=name,
        kind=kind,
        architecture=(cfg.architectures or [type(model).__name__])[0],
        hidden_size=int(cfg.hidden_size),
        vocab_size=int(cfg.vocab_size),
        num_layers=int(getattr(cfg, "num_hidden_layers", 0)),
        num_parameters=sum(p.numel() for p in model.parameters()),
        config_hash=ident.config_hash(cfg.to_dict()),
        weights_hash=ident.weights_hash(folder),
        tokenizer_hash=ident.tokenizer_hash(tokenizer),
    )
    seconds = time.perf_counter() - start
    log.info(
        "loaded %s (%s, %d params) in %.2f s on %s",
        name,
        kind,
        identity.num_parameters,
        seconds,
        choice.device,
    )
    return Backbone(name, kind, model, tokenizer, identity, choice, folder, seconds)


def load_tokenizer(name_or_path: str, *, allow_hub: bool = False):
    """Only the tokenizer (for length statistics and the like): no weights are read."""
    from transformers import AutoTokenizer

    name, folder = resolve_folder(name_or_path, allow_hub=allow_hub)
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise BackboneError(f"cannot load the tokenizer of {name!r} from {folder}: {err}") from err
