"""Sweeps past one machine, on Ray: workers (Ray actors, one per GPU, each holding one pipeline) render the units;
this process writes every file and row, so a Ray sweep's folder is the same as a local sweep's.

Ray is the engine: it places the workers, and when one dies it restarts it (on any node with room) and retries the
unit it held. Each worker keeps its last model loaded; units come model by model, so each model loads once per
worker.
"""

from collections.abc import Callable
from pathlib import Path

from .plan import Unit
from .run import (
    Outcome,
    SweepSettings,
    count_done,
    missing_skips,
    record_cells,
    record_failure,
    render_unit,
    unit_reference,
)

RESTARTS = 3  # a worker that dies is restarted, and its unit retried, this many times; then the unit fails


class Renderer:
    """One worker: loads a model when a unit needs it (`load(model)`, as the local sweep loads it) and renders units
    with `render_unit`. Returns a refusal as a failure instead of raising, so that Ray retries only a dead worker."""

    def __init__(self, settings: SweepSettings, load: Callable, score: Callable | None, threads: int):
        import torch

        # Ray gives a worker one thread per CPU it holds; torch's CPU kernels split their sums by thread, so a
        # worker computes with as many as the driver does, and its images equal a local sweep's to the bit
        torch.set_num_threads(threads)
        self.settings, self.load, self.score = settings, load, score
        self.pipe, self.model = None, None

    def render(self, unit: Unit, skips: list, reference):
        if unit.model != self.model:
            self.pipe, self.model = None, None  # the last model goes before the next one loads
            try:
                self.pipe, self.model = self.load(unit.model), unit.model
            except ValueError as error:
                return {"load_error": str(error)}
        try:
            return render_unit(self.pipe, unit, self.settings, skips, self.score, reference)
        except ValueError as error:
            return {"error": str(error)}


def run_on_ray(
    folder: Path,
    settings: SweepSettings,
    units: list[Unit],
    load: Callable,
    score: Callable | None,
    done: dict[str, dict],
    workers: int | None = None,
    bar=None,
) -> Outcome:
    """`run_local`'s work on the Ray cluster this process is connected to (`ray.init` first): `workers` workers
    (default: one per GPU of the cluster, each with its GPU; without GPUs, 2 with a CPU each), at most one unit
    each at a time. Raises ValueError for a model that cannot load."""
    import ray
    import torch

    gpus = int(ray.cluster_resources().get("GPU", 0))
    count = workers or gpus or 2
    resources = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    worker = ray.remote(max_restarts=RESTARTS, max_task_retries=RESTARTS, **resources)(Renderer)
    idle = [worker.remote(settings, load, score, torch.get_num_threads()) for _ in range(count)]
    outcome = Outcome(found=count_done(units, settings.skips, done))
    pending = [
        (unit, missing, unit_reference(unit, settings.skips, done))
        for unit in units
        if (missing := missing_skips(unit, settings.skips, done))
    ]
    running = {}
    try:
        while pending or running:
            while pending and idle:
                unit, missing, reference = pending.pop(0)
                actor = idle.pop()
                running[actor.render.remote(unit, missing, reference)] = (actor, unit)
            [finished], _ = ray.wait(list(running), num_returns=1)
            actor, unit = running.pop(finished)
            idle.append(actor)
            try:
                answer = ray.get(finished)
            except ray.exceptions.RayError as error:  # the worker died more than RESTARTS times on this unit
                answer = {"error": f"the worker died rendering it ({type(error).__name__})"}
            if isinstance(answer, dict) and "load_error" in answer:
                raise ValueError(answer["load_error"])
            if isinstance(answer, dict):
                record_failure(folder, outcome, unit, answer["error"])
                continue
            record_cells(folder, outcome, answer, bar)
    finally:
        for actor in idle + [actor for actor, _ in running.values()]:
            ray.kill(actor)
    return outcome
