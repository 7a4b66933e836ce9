"""A fine-tuned classifier: a private copy of the backbone (all weights or LoRA matrices trained) read
out through a head or through the prompt, as a training-loop :class:`Trainable` and an evaluation
:class:`Scorer`.

The copy matters: the runner shares one loaded backbone between cells, and that one stays frozen.
LoRA comes from PEFT (``get_peft_model`` injects the adapters into the copy in place, so the copy's own
forward runs them); the readouts are ours because they are a few lines each and must match routes 1
and 2 exactly (same prompt, same label tokens, same pooling).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from tasktune.backbones.loading import Backbone
from tasktune.errors import TaskTuneError
from tasktune.routes.finetuning.config import FinetuneOptions
from tasktune.routes.finetuning.probe import fit_linear_probe
from tasktune.routes.prompt_tuning.inputs import SoftPromptInputs
from tasktune.routes.prompt_tuning.soft_prompt import Encoded
from tasktune.routes.prompting.encoder import TEMPERATURE, label_descriptions
from tasktune.routes.prompting.template import PromptRenderer, encode_within
from tasktune.routes.shared_prefix import last_hidden_states
from tasktune.routes.trained import dev_accuracy, mean_calibration_offset, probabilities_in_batches
from tasktune.task.data import Example
from tasktune.task.spec import TaskSpec
from tasktune.truncation import record, tokenize_bounded

if TYPE_CHECKING:
    from peft import LoraConfig

log = logging.getLogger(__name__)

# Query/value projections by architecture family: what Hu et al. (2021) adapt, and the plain-PEFT
# baseline of our issues (SmolLM2 "q,v").
_QV_NAMES = (("q_proj", "v_proj"), ("query", "value"), ("q", "v"))


def lora_targets(model: torch.nn.Module) -> list[str]:
    leaves = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    for group in _QV_NAMES:
        if all(g in leaves for g in group):
            return list(group)
    raise TaskTuneError(
        "cannot tell this backbone's attention projections apart for LoRA; set lora.target_modules "
        f"(linear layers found: {sorted(leaves)[:12]})"
    )


@contextlib.contextmanager
def seeded_init(seed: int, device: torch.device) -> Iterator[None]:
    """Draws from ``seed`` on the generators parameter initialisation uses (the CPU's, and ``device``'s
    when it is an accelerator), with their states put back on exit: building a classifier (a server
    restoring an adaptation, any caller) must not reseed the process. The draws are exactly those after
    ``torch.manual_seed(seed)``, which seeds these generators (and others, which initialisation does not
    touch). Training does not depend on the state left behind: the loop seeds every global RNG itself
    (``seed_everything``) before its first step, and nothing between construction and training draws
    from them (calibration runs in eval mode)."""
    if device.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            yield
    elif device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        with torch.random.fork_rng(devices=[index], device_type="cuda"), torch.cuda.device(index):
            torch.random.default_generator.manual_seed(seed)
            torch.cuda.manual_seed(seed)  # the current device: ``index``
            yield
    else:  # another accelerator: every device of its type
        with torch.random.fork_rng(device_type=device.type):
            torch.random.default_generator.manual_seed(seed)
            torch.get_device_module(device.type).manual_seed(seed)
            yield


class FinetunedClassifier:
    def __init__(
        self,
        backbone: Backbone,
        task: TaskSpec,
        options: FinetuneOptions,
        seed: int,
        *,
        lora_config: LoraConfig | None = None,
    ):
        """``lora_config``: the adapter's config as stored (restoring an artifact) instead of one built
        from ``options.lora``."""
        self.backbone, self.task, self.options = backbone, task, options
        self.num_labels = task.num_labels
        self.kind = backbone.kind
        dev = backbone.device.device
        with seeded_init(seed, dev):  # head and LoRA initialisation
            self.model = copy.deepcopy(
                backbone.model
            ).float()  # (B, ...) fp32 master weights; autocast on CUDA
            self.peft_config = None
            if options.adapter == "full":
                self.model.requires_grad_(True)
            else:
                self._add_lora(lora_config)
            if options.gradient_checkpointing:
                self.model.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": False}
                )
            hidden = backbone.hidden_size
            self.head = None
            self.inputs = None
            self._template: PromptRenderer | None = None  # head_input='template'
            if options.objective == "head":
                if options.head_input == "template":
                    config = SoftPromptInputs.template_config(task)
                    self._template = PromptRenderer(config, task, backbone.tokenizer)
                self.head = torch.nn.Sequential(
                    torch.nn.Dropout(options.classifier_dropout), torch.nn.Linear(hidden, task.num_labels)
                ).to(dev)
                torch.nn.init.normal_(self.head[1].weight, std=0.02)
                torch.nn.init.zeros_(self.head[1].bias)
            elif self.kind == "causal":
                # LM-BFF on a decoder: route 1's zero-shot prompt (instruction, template, chat format, cue)
                # and the first label words, so step 0 is exactly the zero-shot prompt's classifier.
                self.inputs = SoftPromptInputs.zero_shot(task, backbone.tokenizer, options.max_tokens)
                self._label_ids = torch.tensor(self.inputs.label_token_ids, device=dev)
                # A per-label offset on the label logits, trained with the model; :meth:`calibrate` starts it
                # at route 1's mean calibration, so step 0 is the *calibrated* zero-shot prompt.
                self.label_bias = torch.nn.Parameter(torch.zeros(task.num_labels, device=dev))
            else:
                # The encoder analogue: route 1's similarity to the label descriptions, with the
                # descriptions encoded by the model being trained (the artifact needs nothing else).
                self._descriptions = label_descriptions(task)
        self._frozen_descriptions: torch.Tensor | None = None
        tok = backbone.tokenizer
        self._pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        self.train_mode(False)

    def _add_lora(self, config: LoraConfig | None) -> None:
        from peft import LoraConfig, get_peft_model

        lo = self.options.lora
        self.peft_config = config or LoraConfig(
            r=lo.r,
            lora_alpha=lo.alpha,
            lora_dropout=lo.dropout,
            target_modules=list(lo.target_modules or lora_targets(self.model)),
            task_type="CAUSAL_LM" if self.kind == "causal" else "FEATURE_EXTRACTION",
        )
        # Injects LoRA layers into self.model in place and freezes everything else; the wrapper is kept
        # for PEFT's state-dict and merge helpers.
        self.peft_model = get_peft_model(self.model, self.peft_config)

    # --- the pieces of the model ---------------------------------------------------------------
    @property
    def body(self) -> torch.nn.Module:
        """The transformer without its LM head (the causal LM's ``.model``; the encoder itself)."""
        if self.kind == "causal":
            return getattr(self.model, self.model.base_model_prefix)
        return self.model

    def _encode_plain(self, batch: Sequence[Example]):
        """What a head reads: the bare text (pairs joined by a newline; an encoder's tokenizer pairs
        them itself), or the task's template and cue around it (``head_input='template'``)."""
        tok, limit = self.backbone.tokenizer, self.options.max_tokens
        if self._template is not None:
            rendered = [self._template.render(e) for e in batch]
            if self.kind == "causal":  # over-long texts lose their end, never the template and cue
                fitted = [encode_within(tok, r, limit) for r in rendered]
                record("fine-tuning input", limit, sum(cut for _, cut in fitted))
                return Encoded.of([ids for ids, _ in fitted], self._pad, self._dev)
            texts, pairs = [r.text for r in rendered], None
        elif self.kind == "causal":
            joined = [e.text if e.text_pair is None else f"{e.text}\n{e.text_pair}" for e in batch]
            ids = tok(joined, add_special_tokens=False)["input_ids"]
            record("fine-tuning input", limit, sum(len(r) > limit for r in ids))
            return Encoded.of([r[:limit] or [self._pad] for r in ids], self._pad, self._dev)
        else:
            texts = [e.text for e in batch]
            pairs = [e.text_pair for e in batch] if batch and batch[0].text_pair is not None else None
        return tokenize_bounded(
            tok,
            texts,
            pairs,
            self.backbone.input_limit(self.options.max_tokens),
            "fine-tuning input",
            padding=True,
            return_tensors="pt",
        ).to(self._dev)

    @property
    def _dev(self) -> torch.device:
        return self.backbone.device.device

    def _mean_pool(self, enc) -> torch.Tensor:
        hidden = self.body(**enc).last_hidden_state  # (B, T, H)
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, H)

    def _pooled(self, batch: Sequence[Example]) -> torch.Tensor:
        """(B, H) fp32 features the head reads. Causal: the last real token, the only one that sees the
        whole text (as HF's *ForSequenceClassification); encoder: mean pooling, how sentence encoders
        were trained."""
        if self.kind == "causal":
            enc = self._encode_plain(batch)
            hidden = self.body(input_ids=enc.ids, attention_mask=enc.mask()).last_hidden_state
            return hidden[torch.arange(len(batch), device=self._dev), enc.lengths - 1].float()
        return self._mean_pool(self._encode_plain(batch)).float()

    def logits(self, batch: Sequence[Example]) -> torch.Tensor:
        """(B, L) label logits."""
        with self.backbone.device.autocast():
            if self.options.objective == "head":
                return self.head(self._pooled(batch)).float()
            if self.kind == "causal":
                rows = self.inputs.encode(batch)
                if torch.is_grad_enabled():  # training: the gradient runs through the whole prompt
                    enc = Encoded.of(rows, self._pad, self._dev)
                    hidden = self.body(input_ids=enc.ids, attention_mask=enc.mask()).last_hidden_state
                    last = hidden[torch.arange(len(batch), device=self._dev), enc.lengths - 1]  # (B, H)
                else:  # evaluation: the prompt's shared opening runs once per batch
                    last = last_hidden_states(self.body, rows, self._pad, self._dev)
                vocab = self.model.get_output_embeddings()(last)  # (B, V)
                words = vocab.float().gather(1, self._label_ids[None, :].expand(len(batch), -1))
                return words + self.label_bias
            t = torch.nn.functional.normalize(self._mean_pool(self._encode_plain(batch)).float(), dim=-1)
            return t @ self._description_vectors().T / TEMPERATURE

    def _description_vectors(self) -> torch.Tensor:
        """(L, H) label-description embeddings by the model being trained; fixed (cached) after finish()."""
        if self._frozen_descriptions is not None:
            return self._frozen_descriptions
        enc = self.backbone.tokenizer(
            self._descriptions, padding=True, truncation=True, return_tensors="pt"
        ).to(self._dev)
        return torch.nn.functional.normalize(self._mean_pool(enc).float(), dim=-1)

    @torch.no_grad()
    def calibrate(self, texts: Sequence[Example | str]) -> None:
        """Set the label offset to minus the mean log label distribution over unlabelled texts (route
        1's ``mean`` calibration): the prompt's preference for one label, removed before training."""
        if self.inputs is None or not texts:
            return
        self.label_bias.zero_()
        self.train_mode(False)
        self.label_bias.copy_(mean_calibration_offset(self.predict_proba_all, texts))

    @torch.no_grad()
    def probe(self, examples: Sequence[Example]) -> dict[str, float] | None:
        """LP-FT's first stage (``head_init='probe'``): the head set to a logistic-regression probe of
        the frozen starting model's features of ``examples``. Returns what the probe reached."""
        if self.head is None or self.options.head_init != "probe" or not examples:
            return None
        self.train_mode(False)
        size = self.options.eval_batch_size
        with self.backbone.device.autocast():
            feats = torch.cat([self._pooled(examples[i : i + size]) for i in range(0, len(examples), size)])
        labels = torch.tensor([e.label for e in examples], device=feats.device)
        weight, bias, accuracy = fit_linear_probe(feats, labels, self.num_labels)
        self.head[1].weight.copy_(weight)
        self.head[1].bias.copy_(bias)
        return {"examples": len(examples), "train_accuracy": accuracy}

    # --- Trainable ------------------------------------------------------------------------------
    def parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        params = [(f"model.{n}", p) for n, p in self.model.named_parameters() if p.requires_grad]
        if self.head is not None:
            params += [(f"head.{n}", p) for n, p in self.head.named_parameters()]
        if self.inputs is not None and self.label_bias.requires_grad:
            params.append(("label_bias", self.label_bias))
        return params

    def train_mode(self, training: bool) -> None:
        self.model.train(training)
        if self.head is not None:
            self.head.train(training)

    def loss(self, batch: Sequence[Example]) -> torch.Tensor:
        y = torch.tensor([e.label for e in batch], device=self._dev)
        return torch.nn.functional.cross_entropy(self.logits(batch), y)

    @torch.no_grad()
    def evaluate(self, examples: Sequence[Example]) -> dict[str, float]:
        return dev_accuracy(self.predict_proba_all(examples), examples)

    # --- Scorer ---------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_proba(self, batch: Sequence[Example]) -> np.ndarray:
        return self.logits(batch).softmax(-1).double().cpu().numpy()

    def predict_proba_all(self, examples: Sequence[Example]) -> np.ndarray:
        return probabilities_in_batches(self.predict_proba, examples, self.options.eval_batch_size)

    # --- after training -------------------------------------------------------------------------
    def finish(self) -> None:
        """Inference mode; LoRA merged into the weights when the options ask for it."""
        self.train_mode(False)
        if self.peft_config is not None and self.options.lora.merge_for_inference:
            self.peft_model.merge_adapter()
        self.model.requires_grad_(False)
        if self.inputs is not None:
            self.label_bias.requires_grad_(False)
        if self.options.objective == "prompt" and self.kind != "causal":
            # Inference does not re-encode the descriptions per request (latency is measured on this).
            with torch.no_grad(), self.backbone.device.autocast():
                self._frozen_descriptions = self._description_vectors()

    def artifact_tensors(self) -> dict[str, torch.Tensor]:
        """What the registry keeps: LoRA matrices (PEFT's names) or every weight, plus the head."""
        if self.peft_config is not None:
            from peft import get_peft_model_state_dict

            tensors = dict(get_peft_model_state_dict(self.peft_model))
        else:
            # named_parameters() drops the tied duplicate (lm_head = embed_tokens), which safetensors
            # cannot store twice; persistent buffers go along.
            tensors = {f"model.{n}": p for n, p in self.model.named_parameters()}
            skip = {n for n, _ in self.model.named_buffers()} - set(self.model.state_dict())
            tensors.update({f"model.{n}": b for n, b in self.model.named_buffers() if n not in skip})
        if self.head is not None:
            tensors.update({f"head.{n}": p for n, p in self.head.named_parameters()})
        if self.inputs is not None:
            tensors["label_bias"] = self.label_bias
        return {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}
