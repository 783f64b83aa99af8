"""Benchmarks a 4-skip comparison against what other tools do and against the compute floor; prints Markdown.

- A: clipskip's `compare` with skips 1-4 (one batch, two text-encoder passes); its grids are drawn when first read,
  so "A+G" also reads both, as the app does;
- B: one diffusers pipeline call per skip value with the same embeddings (AUTOMATIC1111's X/Y/Z plot, ComfyUI grids);
- C: one diffusers call with num_images_per_prompt=4 at the same settings, prompt and negative prompt as text (it
  encodes them itself, once each): the same denoiser work, no skip logic.

Runs alternate (A, B, C, then B, C, A, ...) after one warm-up each; times are medians. Peak memory is how far one
run of each rises above the loaded model: the CUDA allocator's peak on a GPU, measured in this process; maxrss on
CPU, measured in a fresh process. `--app` also times the web app: start-up to first page, and its first /compare
answer. On CUDA, `--layouts` measures the UNet and VAE as loaded (eager), in channels-last memory format, and with
the UNet compiled by torch.compile (A and C only: B's smaller batch would compile again); `--calibrate` measures the
UNet's memory per cell, which sets clipskip.comparison.ACTIVATION_BYTES_FACTOR.

`--phases 512,1024` times the work around the pipeline call, for 4 skips at each size with one denoising step:
everything `compare` does besides the pipeline call (encoding, heat maps, SSIM, metadata); `write_outputs` (both
grids drawn, 6 PNGs and the JSON); `start_bundle` (grid.png: what the app shows first) and `finish_bundle` (the
rest, the zip, the clean-up); and from the pipeline call's return to grid.png written. The pipeline call runs once
per size; the repeats replay its images, so that only the work around it is timed. Medians of --repeats.

    python benchmarks/bench_compare.py --model embedded
    python benchmarks/bench_compare.py --model embedded --size 64 --phases 512,1024
    python benchmarks/bench_compare.py --model sd15-arch --size 256 --steps 4   # SD 1.5's shapes, random weights
    python benchmarks/bench_compare.py --model sd15-arch --size 512 --steps 30 --repeats 5 \
        --layouts eager,channels-last,compile --calibrate   # on a CUDA GPU, float16
"""

import argparse
import copy
import json
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clipskip import compare, comparison, load_pipeline  # noqa: E402
from clipskip.embedded import build_tokenizer  # noqa: E402
from clipskip.encoding import encode  # noqa: E402
from clipskip.outputs import finish_bundle, start_bundle, write_outputs  # noqa: E402
from clipskip.samplers import make_scheduler  # noqa: E402

SKIPS = (1, 2, 3, 4)
RUNS = ("A", "A+G", "B", "C")
PROMPT, NEGATIVE, SEED, SAMPLER = "a watercolor painting of a fox in a snowy forest", "blurry, lowres", 42, "Euler"


def sd15_architecture():
    """Stable Diffusion 1.5's components at full size with random weights: the same compute as the real model."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)  # the defaults are SD 1.x's blocks
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
        sample_size=512,
    )
    embedded = load_pipeline("embedded", device="cpu")
    pipe = StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=embedded.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.register_to_config(_name_or_path="sd15-arch")
    return pipe


def peak_memory_mib(name: str, runs: dict, args) -> float:
    """How far one run of variant `name` raises memory above the loaded model: the CUDA allocator's peak, here; or
    the peak resident memory (maxrss) on CPU, in a fresh process, since maxrss never comes down."""
    if torch.cuda.is_available() and runs["device"].type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        runs[name]()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    command = [sys.executable, __file__, "--model", args.model, "--size", str(args.size), "--steps", str(args.steps)]
    command += ["--device", args.device, "--memory-of", name] + (["--dtype", args.dtype] if args.dtype else [])
    return float(subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()[-1])


def report_peak_memory(pipe, args) -> None:
    runs = variants(pipe, args)
    base = psutil.Process().memory_info().rss
    runs[args.memory_of]()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base) / 2**20)


def variants(pipe, args) -> dict:
    """The three runs, each returning its images, and the device they run on."""
    device = pipe._execution_device
    run = copy.copy(pipe)  # B and C on their own view of the pipeline, with the same sampler as A
    run.scheduler = make_scheduler(SAMPLER, pipe.scheduler)
    run.set_progress_bar_config(disable=True)
    settings = {"num_inference_steps": args.steps, "guidance_scale": 7.5, "width": args.size, "height": args.size}
    with torch.no_grad():
        positive, negative = encode(pipe, PROMPT, SKIPS), encode(pipe, NEGATIVE, SKIPS)

    def comparison():
        return compare(pipe, PROMPT, negative_prompt=NEGATIVE, seed=SEED, skips=SKIPS, steps=args.steps,
                       width=args.size, height=args.size, scheduler=SAMPLER)  # fmt: skip

    def a():
        return list(comparison().images.values())

    def a_with_grids():
        result = comparison()
        return [result.grid, result.difference_grid]  # drawn when read

    def b():
        return [
            run(prompt_embeds=positive.embeddings[skip], negative_prompt_embeds=negative.embeddings[skip],
                generator=torch.Generator("cpu").manual_seed(SEED), **settings).images[0]
            for skip in SKIPS
        ]  # fmt: skip

    def c():  # the prompt as text: a diffusers call encodes it (and the negative prompt) itself, as A does
        return run(prompt=PROMPT, negative_prompt=NEGATIVE, num_images_per_prompt=len(SKIPS),
                   generator=[torch.Generator("cpu").manual_seed(SEED)] * len(SKIPS), **settings).images  # fmt: skip

    return {"A": a, "A+G": a_with_grids, "B": b, "C": c, "device": device}


def max_pixel_difference(first, second) -> int:
    return max(
        int(np.abs(np.asarray(x).astype(np.int16) - np.asarray(y).astype(np.int16)).max())
        for x, y in zip(first, second, strict=True)
    )


def encoder_passes(pipe, args) -> int:
    calls = []
    hook = pipe.text_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        compare(pipe, PROMPT, negative_prompt=NEGATIVE, seed=SEED, skips=SKIPS, steps=1, width=64, height=64)
    finally:
        hook.remove()
    return len(calls)


def set_layout(pipe, layout: str) -> None:
    """eager: the UNet and VAE in the default (contiguous) memory format; channels-last: both in channels-last, as
    clipskip loads them on CUDA; compile: contiguous, with the UNet compiled in place as --compile does."""
    memory_format = torch.channels_last if layout == "channels-last" else torch.contiguous_format
    pipe.unet.to(memory_format=memory_format)
    pipe.vae.to(memory_format=memory_format)
    if layout == "compile":
        pipe.unet.compile()


def measure(pipe, args, names=RUNS) -> dict:
    runs = variants(pipe, args)
    device = runs["device"]
    outputs, warm_up = {}, {}
    for name in names:
        start = time.perf_counter()
        outputs[name] = runs[name]()
        warm_up[name] = time.perf_counter() - start
    times = {name: [] for name in names}
    for repeat in range(args.repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            runs[name]()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    result = {
        "time": {name: statistics.median(values) for name, values in times.items()},
        "times": times,
        "warm_up": warm_up,
        "memory": {name: peak_memory_mib(name, runs, args) for name in names},
    }
    if "B" in outputs:  # each of A's cells against the same skip rendered alone; C's first image is A's skip 1
        result["max_pixel_diff_A_B"] = max_pixel_difference(outputs["A"], outputs["B"])
    if "C" in outputs:
        result["max_pixel_diff_A_C_skip1"] = max_pixel_difference(outputs["A"][:1], outputs["C"][:1])
    return result, outputs["A"]


def calibrate(pipe, args) -> list[dict]:
    """Peak CUDA memory of the denoising loop alone (latents out, no VAE) for 1 and 4 cells with CFG, at several
    sizes: the memory one cell adds, and the ACTIVATION_BYTES_FACTOR it implies."""
    run = copy.copy(pipe)
    run.scheduler = make_scheduler(SAMPLER, pipe.scheduler)
    run.set_progress_bar_config(disable=True)
    with torch.no_grad():
        positive, negative = encode(pipe, PROMPT, [1]), encode(pipe, NEGATIVE, [1])
    rows = []
    for size in (512, 768, 1024):
        peaks = {}
        for cells in (1, 4):
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            run(
                prompt_embeds=positive.embeddings[1],
                negative_prompt_embeds=negative.embeddings[1],
                num_images_per_prompt=cells,
                num_inference_steps=2,
                width=size,
                height=size,
                output_type="latent",
            )
            torch.cuda.synchronize()
            peaks[cells] = torch.cuda.max_memory_allocated() - base
        per_cell = (peaks[4] - peaks[1]) / 3
        channels, itemsize = pipe.unet.config.block_out_channels[0], pipe.unet.dtype.itemsize
        unit = comparison.cell_bytes(size // 8, size // 8, channels, itemsize, guided=True)
        unit /= comparison.ACTIVATION_BYTES_FACTOR
        rows.append({"size": size, "peak_1_MiB": peaks[1] / 2**20, "peak_4_MiB": peaks[4] / 2**20,
                     "per_cell_MiB": per_cell / 2**20, "factor": per_cell / unit})  # fmt: skip
    return rows


PHASES = (
    ("pipeline", "the pipeline call, 1 step (run once; the repeats replay it)"),
    ("compare", "`compare` besides the pipeline call"),
    ("write_outputs", "`write_outputs`: both grids, 6 PNGs, the JSON"),
    ("compare+write", "both together"),
    ("start_bundle", "`start_bundle`: grid.png"),
    ("finish_bundle", "`finish_bundle`: the rest, the zip, the clean-up"),
    ("to_grid", "pipeline call returned → grid.png written"),
)


def phase_times(pipe, size: int, repeats: int) -> dict:
    """Seconds of each of PHASES (medians) for a 4-skip comparison at `size`×`size`, one denoising step, and the
    bytes of each file of its bundle. The first pipeline call renders; later ones replay its images."""
    from diffusers.pipelines.stable_diffusion import StableDiffusionPipelineOutput

    pipeline_class, recorded, marks = type(pipe), {}, {}
    call = pipeline_class.__call__

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        if "images" not in recorded:
            recorded["images"] = call(self, *args, **kwargs).images
            recorded["seconds"] = time.perf_counter() - start
        for step in range(kwargs["num_inference_steps"]):  # as a render reports its steps
            kwargs["callback_on_step_end"](self, step, None, {})
        output = StableDiffusionPipelineOutput([image.copy() for image in recorded["images"]], None)
        marks["returned"] = time.perf_counter()
        marks["in_call"] = marks["returned"] - start
        return output

    def comparison():
        start = time.perf_counter()
        result = compare(pipe, PROMPT, negative_prompt=NEGATIVE, seed=SEED, skips=SKIPS, steps=1, width=size,
                         height=size, scheduler=SAMPLER)  # fmt: skip
        return result, time.perf_counter() - start - marks["in_call"]

    times = {name: [] for name, _ in PHASES[1:]}
    pipeline_class.__call__ = timed
    try:
        comparison()  # renders, and warms up
        for _ in range(repeats):
            result, seconds = comparison()
            times["compare"].append(seconds)
            with tempfile.TemporaryDirectory() as root:
                start = time.perf_counter()
                write_outputs(result, Path(root))
                times["write_outputs"].append(time.perf_counter() - start)
            times["compare+write"].append(seconds + times["write_outputs"][-1])
            result, _ = comparison()  # a fresh result: its grids are drawn when first read
            with tempfile.TemporaryDirectory() as root:
                start = time.perf_counter()
                folder = start_bundle(result, Path(root))
                times["start_bundle"].append(time.perf_counter() - start)
                times["to_grid"].append(time.perf_counter() - marks["returned"])
                start = time.perf_counter()
                finish_bundle(result, folder)
                times["finish_bundle"].append(time.perf_counter() - start)
                sizes = {
                    "the zip" if path.suffix == ".zip" else path.name: path.stat().st_size
                    for path in sorted(folder.iterdir())
                }
    finally:
        pipeline_class.__call__ = call
    return (
        {"pipeline": recorded["seconds"]}
        | {name: statistics.median(v) for name, v in times.items()}
        | {"bytes": sizes}
    )


def report_phases(sizes: list[int], pipe, args) -> dict:
    figures = {size: phase_times(pipe, size, args.repeats) for size in sizes}
    print()
    print(f"#### The work around the pipeline call: 4 skips, 1 step, medians of {args.repeats}")
    print()
    print("| phase | " + " | ".join(f"{size}×{size} (s)" for size in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name, label in PHASES:
        print(f"| {label} | " + " | ".join(f"{figures[size][name]:.3f}" for size in sizes) + " |")
    for size in sizes:
        files = figures[size]["bytes"]
        print()
        print(f"Files at {size}×{size}: " + ", ".join(f"{name} {files[name] / 1e6:.2f} MB" for name in files))
    print()
    print("Targets at 1024: `compare` besides the pipeline call ≤ 0.25 s, `write_outputs` ≤ 1.0 s, pipeline call "
          "returned → grid.png ≤ 0.5 s; at 512: both together ≤ 0.3 s")  # fmt: skip
    return figures


def attention_processors(pipe) -> list[str]:
    return sorted({type(processor).__name__ for processor in pipe.unet.attn_processors.values()})


def app_latency() -> tuple[float, float]:
    """Seconds from `python app.py` to its first page, and for its first /compare answer."""
    from gradio_client import Client

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=root, stdout=subprocess.DEVNULL)
    try:
        import httpx

        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        first_page = time.perf_counter() - start
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        start = time.perf_counter()
        client.predict(prompt=PROMPT, negative_prompt=NEGATIVE, seed=SEED, skips=list(SKIPS), steps=20,
                       guidance_scale=7.5, width=None, height=None,  # the model's native size
                       scheduler=SAMPLER, api_name="/compare")  # fmt: skip
        return first_page, time.perf_counter() - start
    finally:
        server.terminate()
        server.wait()


LAYOUTS = ("eager", "channels-last", "compile")


def save(report: dict, path: str | None) -> None:
    if path:
        Path(path).write_text(json.dumps(report, indent=1))


def layout_list(text: str) -> list[str]:
    layouts = text.split(",")
    if not set(layouts) <= set(LAYOUTS):
        raise argparse.ArgumentTypeError(f"layouts are {', '.join(LAYOUTS)}; got {text!r}")
    return sorted(layouts, key=LAYOUTS.index)  # compile last: it changes the UNet in place


def size_list(text: str) -> list[int]:
    return [int(size) for size in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("embedded", "sd15-arch"), default="embedded")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", choices=("fp16", "bf16", "fp32"))
    parser.add_argument(
        "--layouts", type=layout_list, default=["eager"], help=f"comma-separated: {', '.join(LAYOUTS)}"
    )
    parser.add_argument("--calibrate", action="store_true", help="CUDA: the UNet's memory per cell, at three sizes")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--app", action="store_true", help="also time the web app's start-up and first request")
    parser.add_argument(
        "--phases", type=size_list, default=[], help="sizes, comma-separated: the work around denoising"
    )
    parser.add_argument("--memory-of", choices=RUNS, help=argparse.SUPPRESS)  # one run, in a fresh process
    args = parser.parse_args()

    if args.model == "embedded":
        pipe = load_pipeline("embedded", args.device, args.dtype)
    else:
        from clipskip.loading import LoadOptions, pick_device, pick_dtype, prepare

        device = pick_device(args.device)
        pipe = prepare(sd15_architecture(), device, pick_dtype(args.dtype, device), LoadOptions())  # as the app
    if args.memory_of:
        report_peak_memory(pipe, args)
        return
    cuda = pipe._execution_device.type == "cuda"
    cpu = platform.processor() or platform.machine()
    accelerator = torch.cuda.get_device_name() if cuda else "none"
    report = {
        "model": args.model, "size": args.size, "steps": args.steps, "repeats": args.repeats,
        "dtype": str(pipe.unet.dtype), "date": str(date.today()), "cores": psutil.cpu_count(), "cpu": cpu,
        "accelerator": accelerator, "torch": torch.__version__, "attention": attention_processors(pipe),
        "passes": encoder_passes(pipe, args), "layouts": {},
    }  # fmt: skip
    print(f"### {args.model}, {args.size}×{args.size}, {args.steps} steps, 4 skips, {pipe.unet.dtype}")
    print(f"{report['date']} · {report['cores']} cores ({cpu}) · accelerator: {accelerator} · "
          f"torch {torch.__version__} · UNet attention: {', '.join(report['attention'])}")  # fmt: skip
    if args.calibrate and cuda:
        report["calibration"] = calibrate(pipe, args)
        print()
        print("| size | denoise peak, 1 cell (MiB) | 4 cells (MiB) | per cell (MiB) | ACTIVATION_BYTES_FACTOR |")
        print("|---|---|---|---|---|")
        for row in report["calibration"]:
            print(f"| {row['size']} | {row['peak_1_MiB']:.0f} | {row['peak_4_MiB']:.0f} | {row['per_cell_MiB']:.0f} "
                  f"| {row['factor']:.1f} |")  # fmt: skip
        save(report, args.json)  # after each part: a later one may run out of time
    images = {}  # A's cells per layout, to check that a layout changes speed, not images
    for layout in args.layouts:
        set_layout(pipe, layout)
        names = tuple(n for n in RUNS if n != "B") if layout == "compile" else RUNS
        result, images[layout] = measure(pipe, args, names)
        if layout != "eager" and "eager" in images:
            result["max_pixel_diff_A_vs_eager"] = max_pixel_difference(images[layout], images["eager"])
        report["layouts"][layout] = result
        t, m = result["time"], result["memory"]
        print()
        print(
            f"#### {layout}"
            + (f" (first A, compiling included: {result['warm_up']['A']:.1f} s)" if layout == "compile" else "")
        )
        print()
        print("| run | median time (s) | peak memory (MiB) |")
        print("|---|---|---|")
        for name, label in (
            ("A", "A: clipskip compare"),
            ("A+G", "A+G: compare, both grids drawn"),
            ("B", "B: one call per skip"),
            ("C", "C: one call, 4 images"),
        ):
            if name in t:
                print(f"| {label} | {t[name]:.3f} | {m[name]:.0f} |")
        print()
        ratios = [f"A/C = {t['A'] / t['C']:.3f} (target ≤ 1.05)", f"(A+G)/C = {t['A+G'] / t['C']:.3f}"]
        if "B" in t:
            ratios.append(f"B/A = {t['B'] / t['A']:.2f}")
        ratios.append(f"memory A/C = {m['A'] / max(m['C'], 1e-9):.2f} (target ≤ 1.1)")
        ratios.append(f"text-encoder passes per comparison: {report['passes']} (target ≤ 2)")
        if "max_pixel_diff_A_B" in result:
            ratios.append(
                f"max pixel difference, each A cell vs B's render of that skip: {result['max_pixel_diff_A_B']}"
            )
        if "max_pixel_diff_A_vs_eager" in result:
            ratios.append(f"max pixel difference of A's cells from eager's: {result['max_pixel_diff_A_vs_eager']}")
        print(" · ".join(ratios))
        save(report, args.json)
    if len(report["layouts"]) > 1:
        eager = report["layouts"].get("eager", {}).get("time", {}).get("A")
        if eager:
            print()
            faster = [
                f"{name} {eager / r['time']['A']:.2f}×" for name, r in report["layouts"].items() if name != "eager"
            ]
            print("A's speed against eager: " + " · ".join(faster))
    if args.phases:
        report["phases"] = report_phases(args.phases, pipe, args)
        save(report, args.json)
    if args.app:
        first_page, first_request = app_latency()
        print(f"App: first page {first_page:.1f} s after `python app.py` (target < 10 s); "
              f"first /compare (4 skips, native size, 20 steps) answered in {first_request:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
