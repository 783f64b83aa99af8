"""Benchmarks a sweep: cells per second run here and on Ray's local cluster, and what Ray adds per unit; prints
Markdown.

Each run is a fresh folder: `--prompts` prompts × `--seeds` seeds × `--skips`, one unit per (prompt, seed). The local
sweep renders the units one after another in this process; the Ray sweeps start a local cluster of this machine
(`ray.init(num_cpus=…)`) and give the units to 1, then 2 workers. Ray's start-up and each worker's first model load
are timed apart from the units: "units" is the time from the first unit handed out to the last one kept. Ray's
overhead per unit is (1-worker units time − local units time) / units: scheduling, moving the cells' PNG bytes back,
and this process writing them. On a machine with 2 cores two workers share the cores that one local run uses
already, so no speed-up is expected here: the figure to read is the overhead.

    python benchmarks/bench_sweep.py --model embedded --prompts 8 --seeds 4 --steps 20
"""

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipskip.loading import load_pipeline
from clipskip.sweep import run as sweep_run
from clipskip.sweep import sweep
from clipskip.toy.scenes import sample_scenes


def timed_units(monkeypatch_target, folder: Path, **kwargs) -> tuple[float, float, int]:
    """(wall seconds of the whole sweep, seconds from the first unit kept to the last, cells) of one sweep."""
    kept, real = [], monkeypatch_target.keep

    def keep(folder_, cells):
        real(folder_, cells)
        kept.append(time.perf_counter())

    monkeypatch_target.keep = keep
    try:
        start = time.perf_counter()
        result = sweep(folder, progress=False, **kwargs)
        wall = time.perf_counter() - start
    finally:
        monkeypatch_target.keep = real
    assert not result.outcome.failed, result.outcome.failed
    return wall, kept[-1] - kept[0], result.outcome.rendered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--skips", default="1,2,3,4")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    prompts = [scene.caption for scene in sample_scenes(31, args.prompts, mention=1.0)]
    settings = {
        "prompts": prompts,
        "seeds": list(range(args.seeds)),
        "skips": [int(s) for s in args.skips.split(",")],
        "models": [args.model],
        "steps": args.steps,
        "device": "cpu",
    }
    load_pipeline(args.model, device="cpu")  # loaded once here: the local sweep's load is not what is measured
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    units = args.prompts * args.seeds
    rows = []
    try:
        wall, span, cells = timed_units(sweep_run, root / "local", **settings)
        local_per_unit = span / (units - 1)
        rows.append(("local (this process)", wall, span, cells, cells / wall, None))
        import ray

        os.environ.setdefault("PYTHONPATH", str(Path(__file__).resolve().parents[1]))  # the workers import clipskip
        started = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - started
        for workers in (1, 2):
            wall, span, cells = timed_units(sweep_run, root / f"ray{workers}", ray="auto", workers=workers, **settings)
            overhead = span / (units - 1) - local_per_unit if workers == 1 else None
            rows.append(
                (f"Ray, {workers} worker{'s' if workers > 1 else ''}", wall, span, cells, cells / wall, overhead)
            )
        ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    shape = f"{args.prompts} prompts × {args.seeds} seeds × skips {args.skips}, {args.steps} steps"
    print(f"### Sweep: {args.model}, {shape}")
    print(
        f"\n{platform.machine()}, {torch.get_num_threads()} torch threads; Ray's local cluster started in "
        f"{ray_start:.1f} s (not in the figures below).\n"
    )
    print("| run | wall s | units s (first kept → last kept) | cells | cells/s (wall) | Ray's overhead per unit |")
    print("|---|---|---|---|---|---|")
    for name, wall, span, cells, rate, overhead in rows:
        extra = f"{overhead * 1000:.0f} ms" if overhead is not None else ""
        print(f"| {name} | {wall:.1f} | {span:.1f} | {cells} | {rate:.2f} | {extra} |")


if __name__ == "__main__":
    main()
