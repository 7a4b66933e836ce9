import pytest


@pytest.fixture(scope="module")
def llama(tiny_llama_dir):
    from tasktune.backbones.loading import load_backbone

    return load_backbone(str(tiny_llama_dir), device="cpu")


@pytest.fixture(scope="module")
def bert(tiny_bert_dir):
    from tasktune.backbones.loading import load_backbone

    return load_backbone(str(tiny_bert_dir), device="cpu")
