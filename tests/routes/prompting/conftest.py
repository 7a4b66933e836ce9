import pytest

from tasktune.backbones.loading import load_backbone
from tasktune.task.spec import parse_task

TASK = parse_task(
    {
        "name": "reviews",
        "description": "Sentiment of a review.",
        "labels": [
            {"name": "negative", "words": ["bad", "terrible"]},
            {"name": "positive", "words": ["good", "great"]},
        ],
        "data": {"test": {"path": "x.jsonl"}},
        "prompt": {
            "instruction": "Is it good or bad?",
            "input_template": "Review: {{ text }}",
            "cue": "It was",
        },
    }
)


@pytest.fixture(scope="session")
def tiny_llama(tiny_llama_dir):
    return load_backbone(str(tiny_llama_dir), device="cpu")


@pytest.fixture(scope="session")
def tiny_chat_llama(tiny_llama_dir, tmp_path_factory):
    """The tiny llama with a ChatML-style chat template, like SmolLM2's."""
    import shutil

    folder = tmp_path_factory.mktemp("chat-llama")
    for f in tiny_llama_dir.iterdir():
        shutil.copy(f, folder / f.name)
    (folder / "chat_template.jinja").write_text(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    return load_backbone(str(folder), device="cpu")


@pytest.fixture
def task():
    return TASK
