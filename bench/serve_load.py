"""HTTP load on loopback against ``tasktune serve`` with the embedded SmolLM2 backbone and real tasks.

Set-up (once, into --registry): for SST-2, MR and AG News a shallow soft prompt (prompt_tuning, K=8
few-shot, a *short* schedule of --steps steps: this benchmark measures serving, not accuracy — the
accuracy benchmarks train properly), and for SST-2 also the calibrated zero-shot prompt (prompting),
each evaluated by the runner on the first 64 test rows (the drift reference) and registered.

Load: a ``tasktune serve`` subprocess serves the three tasks (soft prompts: one mixed-task forward
pass per micro-batch) and pinned requests to SST-2's prompt version (its own pass). Clients send
one-text requests at concurrency 1, 8 and 32 (mixed tasks, 1 in 4 pinned to the prompt), with
feedback for half of them, then a soak at 32. Prints requests/s, p50/p99 and errors per level; checks
that HTTP answers equal the same adaptations restored in this process; takes a dashboard screenshot
during the soak.

    python bench/serve_load.py [--duration 20] [--soak 120] [--steps 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from common import RESULTS, device_tag, write_result

REPO = Path(__file__).resolve().parents[1]
TASKS = ("sst2", "mr", "agnews")
BACKBONE = "smollm2-135m-instruct"
TOKEN = "bench-admin-token-0123456789"
TEST_ROWS = 64


def build_registry(registry: Path, steps: int) -> None:
    from tasktune.routes.prompt_tuning import route as pt_route
    from tasktune.routes.prompt_tuning.config import default_options
    from tasktune.runner import run_matrix
    from tasktune.task.spec import load_task, parse_task

    def short(protocol, depth="shallow", seed=13, n_train=None, backbone_kind="causal", from_prompt=None):
        options = default_options(protocol, depth, seed, n_train, backbone_kind, from_prompt)
        return options.model_copy(
            update={
                "train": options.train.model_copy(
                    update={"max_steps": steps, "epochs": None, "eval_every": steps}
                )
            }
        )

    pt_route.default_options = short
    data = registry.parent / "data"
    data.mkdir(parents=True, exist_ok=True)
    from tasktune.registry import Registry

    with Registry(registry) as reg:
        done = set(reg.tasks())
    for name in TASKS:
        if name in done:
            continue
        spec = load_task(REPO / "examples" / f"{name}.yaml")
        test_rows = spec.resolve(spec.data["test"]).read_text(encoding="utf-8").splitlines()[:TEST_ROWS]
        (data / f"{name}-test.jsonl").write_text("\n".join(test_rows) + "\n", encoding="utf-8")
        definition = spec.definition()
        definition["data"] = {
            "train": {**definition["data"]["train"], "path": str(spec.resolve(spec.data["train"]))},
            "test": {**definition["data"]["test"], "path": str(data / f"{name}-test.jsonl")},
        }
        small = parse_task(definition, base_dir=data)
        routes = ["prompting", "prompt_tuning"] if name == "sst2" else ["prompt_tuning"]
        for route in routes:  # prompting first: SST-2 v1 = prompt, v2 = soft prompt (active)
            protocol = "zero" if route == "prompting" else "few"
            start = time.perf_counter()
            outcome = run_matrix(
                small,
                route_names=[route],
                backbone_names=[BACKBONE],
                protocol=protocol,
                seeds=[13],
                k=8,
                out_dir=registry.parent / "cells" / name,  # cell names do not carry the task
                registry_root=registry,
            )
            if outcome.failures:
                raise SystemExit(f"set-up failed: {outcome.failures}")
            print(f"  set-up {name} {route}: {time.perf_counter() - start:.0f} s")


def texts_by_task(registry: Path) -> dict[str, list[tuple[str, int]]]:
    from tasktune.task.data import load_split
    from tasktune.task.spec import load_task

    out = {}
    for name in TASKS:
        spec = load_task(REPO / "examples" / f"{name}.yaml")
        spec = spec.model_copy(
            update={
                "data": {
                    **spec.data,
                    "test": spec.data["test"].model_copy(
                        update={"path": str(registry.parent / "data" / f"{name}-test.jsonl")}
                    ),
                }
            }
        )
        out[name] = [(e.text, e.label) for e in load_split(spec, "test").examples]
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_level(base: str, concurrency: int, seconds: float, texts, pinned_version: int, on_tick=None):
    rng = random.Random(concurrency)
    latencies: list[float] = []
    codes: dict[int, int] = {}
    began = time.monotonic()
    stop_at = began + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:

        async def worker() -> None:
            while time.monotonic() < stop_at:
                task = rng.choice(TASKS)
                body: dict = {"task": task}
                if task == "sst2" and rng.random() < 0.25:
                    body["version"] = pinned_version
                text, label = rng.choice(texts[task])
                body["texts"] = [text]
                start = time.perf_counter()
                try:
                    r = await client.post("/v1/predict", json=body)
                    status = r.status_code
                except httpx.TransportError:
                    status = 599
                latencies.append((time.perf_counter() - start) * 1000)
                codes[status] = codes.get(status, 0) + 1
                if status == 200 and rng.random() < 0.5:
                    await client.post(
                        "/v1/feedback", json={"request_id": r.json()["request_id"], "labels": [label]}
                    )

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        if on_tick is not None:
            await on_tick()
        await asyncio.gather(*workers)
    # Requests started before stop_at finish after it and are counted: divide by the time that took.
    elapsed = time.monotonic() - began
    lat = np.array(latencies)
    n_ok = codes.get(200, 0)
    return {
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "requests": int(lat.size),
        "rps": round(n_ok / elapsed, 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "errors": sum(n for c, n in codes.items() if not 200 <= c < 300),
        "errors_5xx": sum(n for c, n in codes.items() if c >= 500),
        "codes": {str(k): v for k, v in sorted(codes.items())},
    }


def equality_check(base: str, registry: Path, texts, pinned_version: int) -> tuple[bool, float]:
    """HTTP answers vs the same adaptations restored here, one request per text."""
    from tasktune.backbones.loading import load_backbone
    from tasktune.registry import Registry
    from tasktune.routes.restore import restore_scorer
    from tasktune.task.data import Example

    backbone = load_backbone(BACKBONE)
    worst, same = 0.0, True
    with Registry(registry) as reg, httpx.Client(base_url=base, timeout=60) as client:
        for task in TASKS:
            for version in ["latest", pinned_version] if task == "sst2" else ["latest"]:
                artifact = reg.load(task, version)
                scorer = restore_scorer(artifact, backbone)
                sample = [t for t, _ in texts[task][:8]]
                local = scorer.predict_proba([Example(t, 0) for t in sample])
                body = {"task": task, "texts": sample, "version": artifact.version}
                served = client.post("/v1/predict", json=body).json()["predictions"]
                names = list(served[0]["probabilities"])
                remote = np.array([[p["probabilities"][n] for n in names] for p in served])
                worst = max(worst, float(np.abs(remote - local).max()))
                same &= bool((remote.argmax(1) == local.argmax(1)).all())
    return same and worst <= 1e-4, worst


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--registry", type=Path, default=REPO / "runs" / "serve-bench" / "registry")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per concurrency level")
    p.add_argument("--soak", type=float, default=120.0, help="seconds of the soak at concurrency 32")
    p.add_argument("--steps", type=int, default=8, help="soft-prompt training steps in the set-up")
    args = p.parse_args()

    build_registry(args.registry, args.steps)  # what is missing from the registry
    texts = texts_by_task(args.registry)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_db = Path(tempfile.mkdtemp()) / "serving.sqlite"
    env = {**os.environ, "TASKTUNE_ADMIN_TOKEN": TOKEN}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "tasktune"),
            "serve",
            "--registry",
            str(args.registry),
            "--tasks",
            ",".join(TASKS),
            "--port",
            str(port),
            "--log-db",
            str(log_db),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        start = time.perf_counter()
        while True:
            try:
                r = httpx.get(f"{base}/health/ready", timeout=2)
                if r.status_code == 200:
                    break
                if "loading failed" in r.text:
                    raise SystemExit(
                        f"the server could not load the adaptations: {r.json()['error']['message']}"
                    )
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.perf_counter() - start > 300:
                raise SystemExit("the server did not become ready")
            time.sleep(0.5)
        ready_s = time.perf_counter() - start
        headers = {"Authorization": f"Bearer {TOKEN}"}
        r = httpx.post(f"{base}/admin/tasks/sst2/load", json={"ref": 1}, headers=headers, timeout=300)
        r.raise_for_status()
        pinned = r.json()["version"]
        print(f"server ready in {ready_s:.1f} s on {base}; SST-2 prompt pinned at v{pinned}")

        rows = []
        for c in (1, 8, 32):
            row = asyncio.run(run_level(base, c, args.duration, texts, pinned))
            rows.append(row)
            print(
                f"  c={c:<3} {row['rps']:>7.2f} req/s  p50 {row['p50_ms']:>8.1f} ms  "
                f"p99 {row['p99_ms']:>8.1f} ms  errors {row['errors']}  {row['codes']}"
            )
        shot = RESULTS / f"serve_dashboard-{device_tag()}.png"

        async def screenshot_mid_soak() -> None:
            await asyncio.sleep(min(args.soak / 2, 60))
            from tasktune.report.browser import find_chromium, screenshot_url

            if find_chromium() is None:
                print("  (no chromium: no dashboard screenshot)")
                return
            await asyncio.to_thread(screenshot_url, f"{base}/", shot, size=(1400, 1800))
            print(f"  dashboard screenshot under load: {shot}")

        soak = asyncio.run(run_level(base, 32, args.soak, texts, pinned, on_tick=screenshot_mid_soak))
        soak["phase"] = "soak"
        rows.append(soak)
        print(
            f"  soak c=32 for {args.soak:.0f} s: {soak['rps']:.2f} req/s, p99 {soak['p99_ms']:.1f} ms, "
            f"5xx {soak['errors_5xx']}, codes {soak['codes']}"
        )
        stats = httpx.get(f"{base}/v1/stats", timeout=30).json()
        equal, worst = equality_check(base, args.registry, texts, pinned)
        print(f"  HTTP answers equal in-process restored adaptations: {equal} (max |diff| {worst:.2e})")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    by_c = {r["concurrency"]: r for r in rows if "phase" not in r}
    summary = {
        "errors": sum(r["errors"] for r in rows),
        "errors_5xx": sum(r["errors_5xx"] for r in rows),
        **{f"rps_c{c}": by_c[c]["rps"] for c in by_c},
        **{f"p50_ms_c{c}": by_c[c]["p50_ms"] for c in by_c},
        **{f"p99_ms_c{c}": by_c[c]["p99_ms"] for c in by_c},
        "soak_seconds": args.soak,
        "soak_rps": soak["rps"],
        "soak_p99_ms": soak["p99_ms"],
        "soak_5xx": soak["errors_5xx"],
        "equal": equal,
        "max_abs_diff": worst,
    }
    write_result(
        "serve_load",
        settings={
            "backbone": BACKBONE,
            "tasks": list(TASKS),
            "duration_s": args.duration,
            "soak_s": args.soak,
            "setup_steps": args.steps,
            "texts_per_request": 1,
            "pinned_prompt_share_of_sst2": 0.25,
            "feedback_share": 0.5,
            "live_accuracy": {t["task"]: t["live_accuracy"] for t in stats["tasks"]},
            "drift": {t["task"]: t["drift"]["state"] for t in stats["tasks"]},
        },
        rows=rows,
        summary=summary,
    )


if __name__ == "__main__":
    main()
