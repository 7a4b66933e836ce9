"""The main job end to end on a 3-label task written from scratch for this test (not one of ours):
`tasktune run` with every route family on a tiny causal LM and a tiny encoder, the comparison, the
recommendation, the report, the registry's `candidate` alias; then the report regenerated from the
stored results alone after the adaptations are deleted."""

from __future__ import annotations

import json
import re
import shutil

from tasktune.cli.main import main
from tasktune.registry import Registry
from tests.conftest import write_jsonl

TOPICS = {
    "billing": ["invoice", "refund", "charge", "payment", "receipt"],
    "technical": ["crash", "error", "freezes", "broken button", "blank screen"],
    "account": ["password", "login", "username", "two-factor code", "email change"],
}
TASK_YAML = """\
name: ticket-triage
description: Route a customer support ticket to the team that handles it.
labels:
  - name: billing
    description: A ticket about money, invoices or refunds.
    words: [billing, money]
  - name: technical
    description: A ticket reporting a software defect.
    words: [technical, defect]
  - name: account
    description: A ticket about signing in or account settings.
    words: [account, login]
data:
  train: {path: tickets-train.jsonl}
  test: {path: tickets-test.jsonl}
constraints:
  max_trainable_params: 100000000
"""


def _tickets(n: int, offset: int) -> list[dict]:
    rows = []
    for i in range(n):
        for label, words in TOPICS.items():
            w = words[(i + offset) % len(words)]
            rows.append({"text": f"ticket {i + offset}: my {w} needs attention today", "label": label})
    return rows


def test_three_label_task_runs_end_to_end(tmp_path, tiny_llama_dir, tiny_bert_dir, capsys):
    write_jsonl(tmp_path / "tickets-train.jsonl", _tickets(30, 0))
    write_jsonl(tmp_path / "tickets-test.jsonl", _tickets(8, 100))
    (tmp_path / "task.yaml").write_text(TASK_YAML)
    out, reg = tmp_path / "run", tmp_path / "reg"
    common = ["--out", str(out), "--registry", str(reg), "--backbones", f"{tiny_llama_dir},{tiny_bert_dir}"]
    task = str(tmp_path / "task.yaml")
    assert main(["run", task, "--routes", "majority,prompting", "--protocol", "zero", *common]) == 0
    routes = "prompt_tuning,finetune_head,finetune_prompt,lora"
    assert main(["run", task, "--routes", routes, "--protocol", "full", *common]) == 0
    printed = capsys.readouterr().out
    assert "recommendation" in printed and "report.html" in printed

    # 1 baseline + prompting × 2 backbones + 4 trained routes × 2 backbones
    cells = sorted(p.name for p in out.glob("*--s*.json"))
    assert len(cells) == 1 + 2 + 8, cells
    for name in cells:
        result = json.loads((out / name).read_text())
        assert result["labels"] == ["billing", "technical", "account"]
        assert len(result["records"]) == 24
        assert result["timings"]["latency_p50_ms"] is not None

    summary = json.loads((out / "report" / "summary.json").read_text())
    choice = summary["recommendation"]["choice"]
    assert choice is not None and not choice.startswith("majority")
    html = (out / "report" / "report.html").read_text()
    assert 'id="pareto-params"' in html and 'id="results-table"' in html
    # Self-contained: nothing to fetch (XML namespace URIs in the inline SVGs are names, not requests).
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?https?:""", html)

    with Registry(reg) as r:
        versions = r.list("ticket-triage")
        candidate = r.show("ticket-triage", "candidate")
    kinds = {v.kind for v in versions}
    assert {"prompt", "soft-prompt", "full", "lora"} <= kinds
    route = choice.split("|")[0]
    assert candidate.manifest.route == route and "candidate" in candidate.aliases

    # The report comes back the same from stored results alone, adaptations deleted.
    before = (out / "report" / "report.md").read_bytes()
    shutil.rmtree(reg)
    shutil.rmtree(out / "report")
    assert main(["report", str(out)]) == 0
    assert (out / "report" / "report.md").read_bytes() == before
