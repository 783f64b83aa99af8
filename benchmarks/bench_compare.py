"""Benchmarks a 4-skip comparison against what other tools do and against the compute floor; prints Markdown.

- A: clipskip's `compare` with skips 1-4 (one batch, two text-encoder passes);
- B: one diffusers pipeline call per skip value with the same embeddings (AUTOMATIC1111's X/Y/Z plot, ComfyUI grids);
- C: one diffusers call with num_images_per_prompt=4 at the same settings: the same denoiser work, no skip logic.

Runs alternate (A, B, C, then B, C, A, ...) after one warm-up each; times are medians. Peak memory is measured for
one run of each in a fresh process: how far it rises above the loaded model (maxrss on CPU, the CUDA allocator's
peak on a GPU). `--app` also times
the web app: start-up to first page, and its first /compare answer.

    python benchmarks/bench_compare.py --model embedded
    python benchmarks/bench_compare.py --model sd15-arch --size 256 --steps 4   # SD 1.5's shapes, random weights
"""

import argparse
import copy
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clipskip import compare, load_pipeline  # noqa: E402
from clipskip.embedded import build_tokenizer  # noqa: E402
from clipskip.encoding import encode  # noqa: E402
from clipskip.samplers import make_scheduler  # noqa: E402

SKIPS = (1, 2, 3, 4)
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


def peak_memory_mib(name: str, args) -> float:
    """How far one run of variant `name` raises memory above the loaded model, measured in a fresh process: the
    CUDA allocator's peak, or the peak resident memory (maxrss) on CPU."""
    command = [sys.executable, __file__, "--model", args.model, "--size", str(args.size), "--steps", str(args.steps)]
    command += ["--device", args.device, "--memory-of", name] + (["--dtype", args.dtype] if args.dtype else [])
    return float(subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()[-1])


def report_peak_memory(pipe, args) -> None:
    runs, device = variants(pipe, args)
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        runs[args.memory_of]()
        torch.cuda.synchronize()
        print((torch.cuda.max_memory_allocated() - base) / 2**20)
    else:
        base = psutil.Process().memory_info().rss
        runs[args.memory_of]()
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base) / 2**20)


def variants(pipe, args):
    device = pipe._execution_device
    run = copy.copy(pipe)  # B and C on their own view of the pipeline, with the same sampler as A
    run.scheduler = make_scheduler(SAMPLER, pipe.scheduler)
    run.set_progress_bar_config(disable=True)
    settings = {"num_inference_steps": args.steps, "guidance_scale": 7.5, "width": args.size, "height": args.size}
    with torch.no_grad():
        positive, negative = encode(pipe, PROMPT, SKIPS), encode(pipe, NEGATIVE, SKIPS)

    def a():
        compare(pipe, PROMPT, negative_prompt=NEGATIVE, seed=SEED, skips=SKIPS, steps=args.steps,
                width=args.size, height=args.size, scheduler=SAMPLER)  # fmt: skip

    def b():
        for skip in SKIPS:
            run(prompt_embeds=positive.embeddings[skip], negative_prompt_embeds=negative.embeddings[skip],
                generator=torch.Generator("cpu").manual_seed(SEED), **settings)  # fmt: skip

    def c():
        run(prompt_embeds=positive.embeddings[1], negative_prompt_embeds=negative.embeddings[1],
            num_images_per_prompt=len(SKIPS), generator=[torch.Generator("cpu").manual_seed(SEED)] * len(SKIPS),
            **settings)  # fmt: skip

    return {"A": a, "B": b, "C": c}, device


def encoder_passes(pipe, args) -> int:
    calls = []
    hook = pipe.text_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        compare(pipe, PROMPT, negative_prompt=NEGATIVE, seed=SEED, skips=SKIPS, steps=1, width=64, height=64)
    finally:
        hook.remove()
    return len(calls)


def measure(pipe, args) -> dict:
    runs, device = variants(pipe, args)
    for run in runs.values():  # warm-up
        run()
    times = {name: [] for name in runs}
    order = list(runs)
    for repeat in range(args.repeats):
        for name in order[repeat % 3 :] + order[: repeat % 3]:
            start = time.perf_counter()
            runs[name]()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {
        "time": {name: statistics.median(values) for name, values in times.items()},
        "memory": {name: peak_memory_mib(name, args) for name in runs},
        "passes": encoder_passes(pipe, args),
    }


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
                       guidance_scale=7.5, width=256, height=256, scheduler=SAMPLER, api_name="/compare")  # fmt: skip
        return first_page, time.perf_counter() - start
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("embedded", "sd15-arch"), default="embedded")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", choices=("fp16", "bf16", "fp32"))
    parser.add_argument("--app", action="store_true", help="also time the web app's start-up and first request")
    parser.add_argument("--memory-of", choices=("A", "B", "C"), help=argparse.SUPPRESS)  # one run, in a fresh process
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
    result = measure(pipe, args)
    t, m = result["time"], result["memory"]
    cpu = platform.processor() or platform.machine()
    accelerator = torch.cuda.get_device_name() if pipe._execution_device.type == "cuda" else "none"
    print(f"### {args.model}, {args.size}×{args.size}, {args.steps} steps, 4 skips, {pipe.unet.dtype}")
    print(
        f"{date.today()} · {psutil.cpu_count()} cores ({cpu}) · accelerator: {accelerator} · torch {torch.__version__}"
    )
    print()
    print("| run | median time (s) | peak memory (MiB) |")
    print("|---|---|---|")
    for name, label in (("A", "A: clipskip compare"), ("B", "B: one call per skip"), ("C", "C: one call, 4 images")):
        print(f"| {label} | {t[name]:.2f} | {m[name]:.0f} |")
    print()
    print(f"A/C = {t['A'] / t['C']:.3f} (target ≤ 1.05) · B/A = {t['B'] / t['A']:.2f} · "
          f"memory A/C = {m['A'] / max(m['C'], 1e-9):.2f} (target ≤ 1.1) · "
          f"text-encoder passes per comparison: {result['passes']} (target ≤ 2)")  # fmt: skip
    if args.app:
        first_page, first_request = app_latency()
        print(f"App: first page {first_page:.1f} s after `python app.py` (target < 10 s); "
              f"first /compare (4 skips, 256×256, 20 steps) answered in {first_request:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
