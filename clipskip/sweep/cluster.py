"""Sweeps past one machine, on Ray: workers (Ray actors, one per GPU, each holding one pipeline) render the units;
this process writes every file and row, so a Ray sweep's folder is the same as a local sweep's.

Ray is the engine: it places the workers, and when one dies it restarts it (on any node with room) and retries the
unit it held. Each worker keeps its last model loaded; units come model by model, so each model loads once per
worker.
"""

from collections.abc import Callable
from pathlib import Path

from .run import Outcome, Renderer, SweepSettings, record

RESTARTS = 3  # a worker that dies is restarted, and its unit retried, this many times; then the unit fails


def run_on_ray(
    folder: Path,
    settings: SweepSettings,
    work,
    load: Callable,
    score: Callable | None,
    outcome: Outcome,
    workers: int | None = None,
    bar=None,
) -> Outcome:
    """`run_local`'s `work` on the Ray cluster this process is connected to (`ray.init` first): `workers`
    `Renderer`s as Ray actors (default: one per GPU of the cluster, each with its GPU; without GPUs, 2 with a CPU
    each), at most one unit each at a time. Raises ValueError for a model that cannot load."""
    import ray
    import torch

    gpus = int(ray.cluster_resources().get("GPU", 0))
    count = workers or gpus or 2
    resources = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    worker = ray.remote(max_restarts=RESTARTS, max_task_retries=RESTARTS, **resources)(Renderer)
    idle = [worker.remote(settings, load, score, torch.get_num_threads()) for _ in range(count)]
    work, running = iter(work), {}
    try:
        while True:
            while idle and (item := next(work, None)) is not None:
                unit, missing, reference = item
                actor = idle.pop()
                running[actor.render.remote(unit, missing, reference)] = (actor, unit)
            if not running:
                return outcome
            [finished], _ = ray.wait(list(running), num_returns=1)
            actor, unit = running.pop(finished)
            idle.append(actor)
            try:
                answer = ray.get(finished)
            except ray.exceptions.RayError as error:  # the worker died more than RESTARTS times on this unit
                answer = {"error": f"the worker died rendering it ({type(error).__name__})"}
            record(folder, outcome, unit, answer, bar)
    finally:
        for actor in idle + [actor for actor, _ in running.values()]:
            ray.kill(actor)
