"""A batch's shared opening run once: the same last hidden states as the whole pass."""

import pytest
import torch

from tasktune.backbones.loading import load_backbone
from tasktune.routes.shared_prefix import MIN_SHARED, last_hidden_states

OPENING = [5, 9, 13, 40, 41, 42, 7]


@pytest.fixture(scope="module")
def body(tiny_llama_dir):
    return load_backbone(str(tiny_llama_dir), device="cpu").model.model


def _whole(body, rows):
    out = []
    for r in rows:
        with torch.no_grad():
            out.append(body(input_ids=torch.tensor([r])).last_hidden_state[0, -1])
    return torch.stack(out)


@pytest.mark.parametrize(
    "rows",
    [
        [[*OPENING, 60, 61], [*OPENING, 3], [*OPENING, 100, 3, 4, 5, 6]],  # the opening is shared
        [[*OPENING, 60], OPENING],  # a row that is only the opening keeps its last token
        [[1, 2, 3], [4, 5]],  # nothing shared
        [[*OPENING, 60, 61]],  # one row
    ],
)
def test_equals_the_whole_pass(body, rows):
    with torch.no_grad():
        got = last_hidden_states(body, rows, 0, torch.device("cpu"))
    torch.testing.assert_close(got, _whole(body, rows), atol=1e-5, rtol=1e-5)


def test_a_short_opening_is_not_worth_a_pass(body):
    calls = []
    handle = body.register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            last_hidden_states(
                body, [[1] * (MIN_SHARED - 1) + [2], [1] * (MIN_SHARED - 1) + [3]], 0, torch.device("cpu")
            )
            assert len(calls) == 1
            last_hidden_states(body, [[*OPENING, 2], [*OPENING, 3]], 0, torch.device("cpu"))
            assert len(calls) == 3  # the opening, then every row's own tokens
    finally:
        handle.remove()
