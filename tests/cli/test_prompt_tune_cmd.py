from tasktune.backbones.loading import load_backbone
from tasktune.cli.main import main
from tasktune.registry import Registry


def test_explain_lists_nearest_tokens(tiny_llama_dir, tmp_path, capsys):
    b = load_backbone(str(tiny_llama_dir), device="cpu")
    emb = b.model.get_input_embeddings().weight.detach()
    prompt = emb[[20, 21, 22]].clone()  # a prompt sitting exactly on three vocabulary tokens
    with Registry(tmp_path / "reg") as reg:
        reg.save(
            "demo",
            "soft-prompt",
            backbone=b.identity,
            route="prompt_tuning",
            tensors={"prompt_embeddings": prompt},
        )
    args = [
        "prompt-tune",
        "explain",
        "demo",
        "--backbone",
        str(tiny_llama_dir),
        "--registry",
        str(tmp_path / "reg"),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3 virtual tokens" in out
    for i in (20, 21, 22):
        assert repr(b.tokenizer.convert_ids_to_tokens(i)) + " 1.00" in out


def test_explain_refuses_other_kinds(tiny_llama_dir, tmp_path, capsys):
    b = load_backbone(str(tiny_llama_dir), device="cpu")
    with Registry(tmp_path / "reg") as reg:
        reg.save(
            "demo", "prompt", backbone=b.identity, route="prompting", json_files={"prompt.json": {"x": 1}}
        )
    assert main(["prompt-tune", "explain", "demo", "--registry", str(tmp_path / "reg")]) == 2
    assert "explain reads shallow soft prompts" in capsys.readouterr().err
