"""A sweep on Ray's local cluster with two workers, one of them killed in the middle: the same files and rows as a
local sweep."""

import os
import signal
import subprocess
import threading

import pyarrow.parquet
import ray

from clipskip.sweep import sweep

TINY = {"skips": [1, 2], "steps": 1, "width": 64, "height": 64, "device": "cpu", "progress": False}
PROMPTS = ["a red fox", "a blue bird"]


def same_folders(a, b) -> None:
    rows_a = pyarrow.parquet.read_table(a / "results.parquet").to_pylist()
    rows_b = pyarrow.parquet.read_table(b / "results.parquet").to_pylist()
    assert rows_a == rows_b and len(rows_a) == len(PROMPTS) * 2 * 2
    for row in rows_a:
        assert (a / row["file"]).read_bytes() == (b / row["file"]).read_bytes()


def workers() -> list[int]:
    found = subprocess.run(["pgrep", "-f", "^ray::Renderer"], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found]


def test_a_ray_sweep_with_a_worker_killed_mid_way_writes_the_same_files_and_rows_as_a_local_one(pipe, tmp_path):
    local, ray_folder = tmp_path / "local", tmp_path / "ray"
    sweep(local, PROMPTS, seeds=[1, 2], **TINY)
    killed, stop = [], threading.Event()

    def kill_one_after_the_first_unit():
        while not stop.is_set():
            if (ray_folder / "rows.jsonl").exists() and (pids := workers()):
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
            stop.wait(0.02)

    killer = threading.Thread(target=kill_one_after_the_first_unit)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    killer.start()
    try:
        result = sweep(ray_folder, PROMPTS, seeds=[1, 2], ray="auto", workers=2, **TINY)
    finally:
        stop.set()
        killer.join()
        ray.shutdown()
    assert killed, "no worker was killed: the sweep ended first"
    assert (result.outcome.rendered, result.outcome.failed) == (8, [])  # the killed worker's unit too
    same_folders(ray_folder, local)
