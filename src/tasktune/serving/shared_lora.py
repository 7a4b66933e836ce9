"""LoRA adaptations served on one shared copy of their backbone, in mixed-adapter batches.

Restored on its own, every LoRA adaptation is a :class:`~tasktune.routes.finetuning.classifier.
FinetunedClassifier` with a private deep copy of the backbone (hundreds of MB each on SmolLM2), and
each answers in its own forward pass. Here a :class:`SharedLoraHost` keeps ONE extra copy per backbone,
wrapped once by PEFT, and every LoRA adaptation becomes a named adapter on it; a
:class:`SharedLoraScorer` reads one adapter out exactly as the classifier it replaces does (route 1's
prompt and label tokens plus the trained label offset on a causal LM; mean pooling and the trained
head on an encoder). :func:`mixed_lora_proba` answers rows of different adapters — other tasks, label
sets and lengths — together (one forward pass per length bucket, :mod:`tasktune.serving.passes`)
through PEFT's mixed-adapter batch inference (each LoRA layer
adds row ``i`` only the update of adapter ``adapter_names[i]``; a layer an adapter does not target adds
nothing to its rows), then applies each row's own readout.

Memory: the host copy is fp32, as each classifier's private copy was (the answers must be the ones the
evaluation recorded), so N LoRA adaptations on a backbone cost one copy plus their LoRA matrices, not N
copies. An adaptation trained with ``lora.merge_for_inference`` is served unmerged (the same function;
merging would change the weights every other adapter sees).

The pristine ``backbone.model`` is never touched: soft prompts and text prompts keep running on it
without LoRA layers. Rows pick their adapter by name in every forward (``adapter_names``), never through
PEFT's "active adapter" state, so a forward does not depend on which adapter was added last.

Thread safety: adapters are added from a loader thread while the batch worker may be forwarding, so
adding, deleting and forwarding all hold the host's lock. Deleting (a version unloaded by an admin
call, on the event loop) never waits for it: when the lock is busy the deletion is queued and done by
the next forward or addition.

What cannot share the host is refused with :class:`SharedLoraRefused`, leaving nothing on it (the
loader then restores that adaptation the old way): DoRA and other LoRA variants (PEFT cannot mix them in
a batch), adapters that train or rewrite base-model weights (``bias``, PiSSA-like initialisations,
KaSA), and ones that replace whole modules (``modules_to_save``, trainable tokens, layer replication,
``target_parameters``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tasktune.backbones.loading import Backbone
from tasktune.errors import TaskTuneError
from tasktune.routes.finetuning.classifier import seeded_init
from tasktune.routes.finetuning.config import FinetuneOptions
from tasktune.routes.prompt_tuning.inputs import SoftPromptInputs
from tasktune.routes.prompt_tuning.soft_prompt import Encoded
from tasktune.routes.prompting.search import zero_shot_config
from tasktune.serving.passes import in_passes
from tasktune.task.data import Example
from tasktune.task.spec import TaskSpec

if TYPE_CHECKING:
    from peft import LoraConfig

    from tasktune.registry.artifact import Artifact

log = logging.getLogger(__name__)


class AdapterUnloadedError(TaskTuneError):
    """A request reached an adapter an admin unloaded after the request was routed to it."""


# Initialisations that leave the base weights alone (the stored matrices replace whatever they drew).
_PLAIN_INITS = (True, False, "gaussian")


class SharedLoraRefused(TaskTuneError):
    """This adapter cannot share a host with others; serve it on its own copy of the backbone."""


def refusal(config: LoraConfig) -> str | None:
    """Why an adapter with this config cannot join a shared host; None: it can."""
    if getattr(config, "use_dora", False):
        return "it uses DoRA, which PEFT cannot mix with other adapters in one batch"
    if getattr(config, "bias", "none") != "none":
        return f"it trains the base model's biases (bias={config.bias!r}), which all adapters on it share"
    init = getattr(config, "init_lora_weights", True)
    if init not in _PLAIN_INITS:
        return f"its initialisation {init!r} changes the base weights every adapter on the host shares"
    if getattr(config, "kasa_config", None) is not None:
        return "it uses KaSA, which truncates the base weights every adapter on the host shares"
    for field, what in (
        ("modules_to_save", "trains whole modules (modules_to_save)"),
        ("trainable_token_indices", "trains token embeddings (trainable_token_indices)"),
        ("layer_replication", "replicates layers (layer_replication)"),
        ("target_parameters", "targets parameters, not modules (target_parameters)"),
        ("megatron_config", "is a Megatron adapter"),
        ("alora_invocation_tokens", "is an activated LoRA (aLoRA), which needs per-row offsets"),
    ):
        if getattr(config, field, None):
            return f"it {what}"
    return None


def _safe(text: str) -> str:
    """An adapter-name fragment: PEFT names become module-dict keys, which cannot hold dots."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)[:40]


def _adapter_names_hook(module, args, kwargs, adapter_names):
    kwargs["adapter_names"] = adapter_names
    return args, kwargs


class SharedLoraHost:
    """One PEFT-wrapped copy of a backbone (fp32, as the classifier's copy) holding every LoRA adapter
    served on it. The copy is made when the first adapter arrives."""

    def __init__(self, backbone: Backbone):
        self.backbone = backbone
        self.lock = threading.RLock()
        self.model: torch.nn.Module | None = None  # the copy; LoRA layers injected in place
        self.peft_model: Any = None  # PEFT's wrapper around it (adapter bookkeeping)
        self.adapters: dict[str, LoraConfig] = {}
        self._names = itertools.count(1)
        self._doomed: list[str] = []  # deletions waiting for the lock (list.append is atomic)
        tok = backbone.tokenizer
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)

    @property
    def body(self) -> torch.nn.Module:
        """The transformer without its LM head (the causal LM's ``.model``; the encoder itself)."""
        assert self.model is not None
        if self.backbone.kind == "causal":
            return getattr(self.model, self.model.base_model_prefix)
        return self.model

    # --- adapters -----------------------------------------------------------------------------------
    def add(self, label: str, config: LoraConfig, weights: dict[str, torch.Tensor], where: str) -> str:
        """Add a trained adapter; returns its name on the host. Raises :class:`SharedLoraRefused` for
        what cannot share the host, :class:`TaskTuneError` for tensors that do not fit ``config``."""
        from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

        why = refusal(config)
        if why is not None:
            raise SharedLoraRefused(f"{where} cannot share its backbone's LoRA host: {why}")
        config = copy.deepcopy(config)
        config.inference_mode = True
        dev = self.backbone.device.device
        with self.lock:
            self._purge()
            name = f"tt{next(self._names)}_{_safe(label)}"
            # Adding draws the (immediately overwritten) initial matrices: on forked generators, so
            # loading an adaptation does not move the process's random state (as seeded_init promises).
            try:
                with seeded_init(0, dev):
                    if self.peft_model is None:
                        model = copy.deepcopy(self.backbone.model).float()
                        self.peft_model = get_peft_model(model, config, adapter_name=name)
                        self.model = model
                    else:
                        self.peft_model.add_adapter(name, config)
            except (ValueError, TypeError, KeyError, RuntimeError) as err:
                self._strip(name)
                raise SharedLoraRefused(f"{where}: PEFT cannot add it to the shared host: {err}") from err
            self.adapters[name] = config
            try:
                self._check_plain(name, where)
                expected = set(get_peft_model_state_dict(self.peft_model, adapter_name=name))
                if set(weights) != expected:
                    raise TaskTuneError(
                        f"{where}: the stored LoRA tensors do not match the adapter lora_config.json "
                        f"describes (missing {sorted(expected - set(weights))[:3]}, unexpected "
                        f"{sorted(set(weights) - expected)[:3]})"
                    )
                set_peft_model_state_dict(self.peft_model, weights, adapter_name=name)
            except BaseException:
                self._delete(name)
                raise
            # New LoRA modules start in training mode with gradients: the host only predicts (and PEFT
            # refuses ``adapter_names`` in training mode).
            self.peft_model.eval()
            self.peft_model.requires_grad_(False)
            return name

    def _check_plain(self, name: str, where: str) -> None:
        """A LoRA variant (DoRA, aLoRA, ...) has its own forward that mixed batches do not support."""
        from peft.tuners.lora import LoraLayer

        for module in self.model.modules():
            if isinstance(module, LoraLayer) and name in getattr(module, "lora_variant", {}):
                variant = type(module.lora_variant[name]).__name__
                raise SharedLoraRefused(
                    f"{where} cannot share its backbone's LoRA host: it is a LoRA variant ({variant}) "
                    "that PEFT cannot mix with other adapters in one batch"
                )

    def remove(self, name: str) -> None:
        """Delete an adapter, now if the host is idle, else at the next forward or addition (never
        waits: an admin's unload runs on the event loop)."""
        if self.lock.acquire(blocking=False):
            try:
                self._delete(name)
            finally:
                self.lock.release()
        else:
            self._doomed.append(name)

    def _strip(self, name: str) -> None:
        """Remove what a failed ``add_adapter`` left: PEFT drops the adapter's config when injection
        raises, but not the LoRA modules it had already put into earlier layers, which would then sit
        on the host (in training mode) with no config to delete them by."""
        from peft.tuners.lora import LoraLayer

        if self.model is None:
            return
        for module in self.model.modules():
            if isinstance(module, LoraLayer) and name in module.lora_A:
                module.delete_adapter(name)

    def _purge(self) -> None:
        while self._doomed:
            self._delete(self._doomed.pop())

    def _delete(self, name: str) -> None:
        if name in self.adapters:
            del self.adapters[name]
            if name in self.peft_model.peft_config:
                self.peft_model.delete_adapter(name)
            log.info("deleted LoRA adapter %s from the %s host", name, self.backbone.name)

    # --- forward ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def forward(self, names: Sequence[str]) -> Iterator[torch.nn.Module]:
        """The host model with row ``i`` of every forward inside the block running adapter
        ``names[i]`` (PEFT's mixed-adapter batch); holds the lock throughout."""
        with self.lock:
            self._purge()
            gone = sorted(set(names) - set(self.adapters))
            if gone:
                raise AdapterUnloadedError(
                    f"LoRA adapter(s) {gone} are no longer loaded (the version was unloaded)"
                )
            # What PeftModel.forward(adapter_names=...) does (LoraModel._enable_peft_forward_hooks): every
            # LoRA layer gets ``adapter_names`` as a forward argument. Done here because the readouts call
            # the body and the output embeddings separately, and so that the hooks go away even when the
            # forward raises (PEFT's context manager leaves them registered then).
            from peft.tuners.lora import LoraLayer

            assert not self.model.training  # PEFT refuses adapter_names in training mode
            hook = functools.partial(_adapter_names_hook, adapter_names=list(names))
            handles = [
                m.register_forward_pre_hook(hook, with_kwargs=True)
                for m in self.model.modules()
                if isinstance(m, LoraLayer)
            ]
            try:
                yield self.model
            finally:
                for handle in handles:
                    handle.remove()

    def parameter_count(self) -> int:
        with self.lock:
            return 0 if self.model is None else sum(p.numel() for p in self.model.parameters())


class SharedLoraScorer:
    """One LoRA adaptation on a :class:`SharedLoraHost`, read out as its FinetunedClassifier is."""

    def __init__(
        self,
        host: SharedLoraHost,
        adapter: str,
        task: TaskSpec,
        options: FinetuneOptions,
        *,
        inputs: SoftPromptInputs | None = None,
        label_bias: torch.Tensor | None = None,
        head: torch.nn.Module | None = None,
    ):
        self.host, self.adapter, self.task, self.options = host, adapter, task, options
        self.num_labels = task.num_labels
        self.inputs, self.label_bias, self.head = inputs, label_bias, head
        dev = host.backbone.device.device
        self._label_ids = None if inputs is None else torch.tensor(inputs.label_token_ids, device=dev)

    def predict_proba(self, batch: Sequence[Example]) -> np.ndarray:
        if not batch:
            return np.zeros((0, self.num_labels))
        return np.stack(mixed_lora_proba([(self, e) for e in batch]))

    def release(self) -> None:
        """Delete this adaptation's adapter from the host (the version was unloaded)."""
        self.host.remove(self.adapter)


def applies(backbone: Backbone, options: FinetuneOptions) -> bool:
    """The readouts implemented here: the lora route's on each kind (prompt on a causal LM, head on an
    encoder); any other combination is restored as a FinetunedClassifier."""
    if options.adapter != "lora" or options.head_input != "text":  # the host reads the bare text
        return False
    return (backbone.kind, options.objective) in (("causal", "prompt"), ("encoder", "head"))


def restore_shared_lora(artifact: Artifact, host: SharedLoraHost) -> SharedLoraScorer | None:
    """The stored LoRA adaptation as an adapter on ``host``; None where this path does not apply
    (restore it with :func:`~tasktune.routes.restore.restore_scorer`). Raises
    :class:`SharedLoraRefused` for an adapter that cannot share the host."""
    from tasktune.routes.finetuning.restore import FINETUNE_FILE, HEAD, LABEL_BIAS, _lora_config
    from tasktune.routes.restore import check_fits, check_label_tokens, json_file, restore_task, where

    backbone = host.backbone
    if artifact.kind != "lora":
        return None
    task = restore_task(artifact)
    check_fits(artifact, backbone)
    name = where(artifact)
    meta = json_file(artifact, FINETUNE_FILE)
    options = FinetuneOptions.model_validate(meta["options"])
    if not applies(backbone, options):
        return None
    dev = backbone.device.device
    tensors = dict(artifact.tensors)
    inputs = label_bias = head = None
    if options.objective == "prompt":  # causal: route 1's zero-shot prompt, as the classifier builds it
        config = zero_shot_config(task, has_unlabelled=False).model_copy(update={"calibration": "none"})
        inputs = SoftPromptInputs(task, backbone.tokenizer, options.max_tokens, config=config)
        check_label_tokens(meta.get("label_token_ids"), inputs.label_token_ids, name)
        if LABEL_BIAS not in tensors:
            raise TaskTuneError(f"{name}: no {LABEL_BIAS} tensor stored")
        label_bias = tensors.pop(LABEL_BIAS).float().to(dev)
    else:  # encoder: dropout (off) + linear head on the mean-pooled embedding
        stored = {k.removeprefix(HEAD): tensors.pop(k) for k in list(tensors) if k.startswith(HEAD)}
        linear = torch.nn.Linear(backbone.hidden_size, task.num_labels)
        head = torch.nn.Sequential(torch.nn.Dropout(options.classifier_dropout), linear)
        try:
            head.load_state_dict(stored)
        except RuntimeError as err:
            raise TaskTuneError(f"{name}: the stored head does not fit: {err}") from err
        head = head.to(dev).eval().requires_grad_(False)
    adapter = host.add(f"{artifact.task}_v{artifact.version}", _lora_config(artifact), tensors, name)
    return SharedLoraScorer(host, adapter, task, options, inputs=inputs, label_bias=label_bias, head=head)


# --- one forward for rows of many adapters ----------------------------------------------------------
def _tokenize_encoder_rows(rows: Sequence[tuple[SharedLoraScorer, Example]], tok) -> list[Any]:
    """Each row tokenized as the classifier does (its own adaptation's ``max_tokens``)."""
    return [
        tok(e.text, e.text_pair, truncation=True, max_length=s.options.max_tokens)
        if e.text_pair is not None
        else tok(e.text, truncation=True, max_length=s.options.max_tokens)
        for s, e in rows
    ]


def _pad_encoder_rows(enc: Sequence[Any], tok, dev) -> dict[str, torch.Tensor]:
    width = max(len(r["input_ids"]) for r in enc)
    left = getattr(tok, "padding_side", "right") == "left"
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    out: dict[str, torch.Tensor] = {}
    for key in enc[0]:
        if key not in ("input_ids", "attention_mask", "token_type_ids"):
            continue
        fill = pad_id if key == "input_ids" else 0
        t = torch.full((len(enc), width), fill, dtype=torch.long)
        for i, r in enumerate(enc):
            vals = torch.tensor(r[key], dtype=torch.long)
            if left:
                t[i, width - len(vals) :] = vals
            else:
                t[i, : len(vals)] = vals
        out[key] = t.to(dev)
    return out


@torch.inference_mode()
def mixed_lora_proba(
    rows: Sequence[tuple[SharedLoraScorer, Example]], max_rows: int | None = None
) -> list[np.ndarray]:
    """Probabilities of each row under its own LoRA adaptation, rows of every adapter together in one
    forward pass of the shared host per length bucket (:mod:`tasktune.serving.passes`); rows must
    share a host (:func:`~tasktune.serving.mixed.mix_key`)."""
    host = rows[0][0].host
    if any(s.host is not host for s, _ in rows):
        raise ValueError("mixed_lora_proba: rows of different LoRA hosts cannot share a forward pass")
    backbone = host.backbone
    encoded: list[Any]
    if backbone.kind == "causal":
        encoded = [s.inputs.encode([e])[0] for s, e in rows]
        lengths = [len(r) for r in encoded]
    else:
        encoded = _tokenize_encoder_rows(rows, backbone.tokenizer)
        lengths = [len(r["input_ids"]) for r in encoded]
    return in_passes(
        lengths,
        backbone.device.device.type,
        lambda idx: _lora_pass(host, [rows[i][0] for i in idx], [encoded[i] for i in idx]),
        max_rows,
    )


def _lora_pass(
    host: SharedLoraHost, scorers: Sequence[SharedLoraScorer], encoded: Sequence[Any]
) -> list[np.ndarray]:
    backbone = host.backbone
    dev = backbone.device.device
    B = len(scorers)
    groups: dict[int, tuple[SharedLoraScorer, list[int]]] = {}
    for i, s in enumerate(scorers):
        groups.setdefault(id(s), (s, []))[1].append(i)
    causal = backbone.kind == "causal"
    if causal:
        enc = Encoded.of(encoded, host.pad, dev)
    else:
        batch = _pad_encoder_rows(encoded, backbone.tokenizer, dev)
    out: list[np.ndarray | None] = [None] * B
    with host.forward([s.adapter for s in scorers]) as model, backbone.device.autocast():
        if causal:
            # The prompt objective: label-token logits at the last real position, plus the label offset.
            hidden = host.body(input_ids=enc.ids, attention_mask=enc.mask()).last_hidden_state
            last = hidden[torch.arange(B, device=dev), enc.lengths - 1]  # (B, H)
            vocab = model.get_output_embeddings()(last)  # (B, V)
            for s, idx in groups.values():
                ix = torch.tensor(idx, device=dev)
                words = vocab[ix].float().gather(1, s._label_ids[None, :].expand(len(idx), -1))
                for j, p in zip(idx, (words + s.label_bias).softmax(-1).double().cpu().numpy(), strict=True):
                    out[j] = p
        else:
            # The head objective: mean pooling over real tokens, then the adaptation's head.
            hidden = host.body(**batch).last_hidden_state  # (B, T, H)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, H)
            for s, idx in groups.values():
                ix = torch.tensor(idx, device=dev)
                logits = s.head(pooled[ix].float()).float()
                for j, p in zip(idx, logits.softmax(-1).double().cpu().numpy(), strict=True):
                    out[j] = p
    return out  # type: ignore[return-value]
