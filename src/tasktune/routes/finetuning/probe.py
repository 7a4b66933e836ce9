"""A linear probe: multinomial logistic regression on fixed features, the first stage of LP-FT
(Kumar et al. 2022, "Fine-tuning can distort pretrained features"): the new head starts as the best
linear readout of the frozen backbone, then the whole model is fine-tuned from there.

Written here rather than taken from scikit-learn (not a dependency): it is one convex problem solved
by torch's L-BFGS, deterministic on CPU, on the features' own device.
"""

from __future__ import annotations

import torch

# scikit-learn's default C=1 on standardised features: 0.5·|W|² + C·Σ loss, i.e. with the mean loss
# an L2 weight of 1 / (2·n). Separable few-shot features need it, or the weights grow without bound.
C = 1.0
MAX_ITER = 200


def fit_linear_probe(
    features: torch.Tensor, labels: torch.Tensor, num_labels: int, *, c: float = C
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(weight (L, H), bias (L,), training accuracy) of an L2-regularised softmax regression of
    ``labels`` on ``features`` (N, H). Solved on standardised features — raw hidden states of a
    decoder have a few dimensions hundreds of times larger than the rest, which L-BFGS handles
    badly — and folded back, so the returned head applies to the raw features."""
    x = features.detach().double()
    y = labels.to(x.device)
    mu, sd = x.mean(0), x.std(0, unbiased=False).clamp(min=1e-6)
    z = (x - mu) / sd
    w = torch.zeros(num_labels, x.shape[1], dtype=x.dtype, device=x.device, requires_grad=True)
    b = torch.zeros(num_labels, dtype=x.dtype, device=x.device, requires_grad=True)
    l2 = 1.0 / (2.0 * c * len(x))
    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=MAX_ITER, tolerance_grad=1e-9, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ w.T + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        weight = w / sd  # z @ w.T = x @ (w / sd).T - (mu / sd) @ w.T
        bias = b - (mu / sd) @ w.T
        accuracy = float(((x @ weight.T + bias).argmax(1) == y).double().mean())
    return weight.float(), bias.float(), accuracy
