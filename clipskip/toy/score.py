"""How well a model draws what its prompt says, at each CLIP skip: `python -m clipskip.toy.score`.

Prompts come from the scene grammar with every size and position written out; each is rendered at every skip
(one comparison per eight prompts, so every skip starts from the same noise) and read back with `detect`.
"""

import argparse
import json
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from ..comparison import compare
from ..request import MAX_ROWS
from .detect import read_scene
from .scenes import Scene, sample_scenes

PROMPT_SEED = 31  # the scored prompts, fixed, and never the training scenes' seeds
SCORE_SEED = 0  # every scored prompt is rendered at this seed
TARGETS = {"colour": 0.9, "shape": 0.8, "background": 0.9, "both colours": 0.6}  # at skip 1; position has none


@dataclass
class Tally:
    """Counts of right readings, by measure."""

    scored: dict[str, list[int]] = field(default_factory=dict)  # measure -> [right, read]

    def add(self, measure: str, right: bool) -> None:
        self.scored.setdefault(measure, [0, 0])
        self.scored[measure][0] += int(right)
        self.scored[measure][1] += 1

    def rates(self) -> dict[str, float]:
        return {measure: right / total for measure, (right, total) in self.scored.items()}


def judge(scene: Scene, image, tally: Tally) -> None:
    reading = read_scene(image)
    if len(scene.shapes) == 1:
        expected, found = scene.shapes[0], reading.shapes[:1]
        tally.add("colour", bool(found) and found[0].colour == expected.colour)
        tally.add("shape", bool(found) and found[0].kind == expected.kind)
        tally.add("position", bool(found) and found[0].position == expected.position)  # not a target: shown
        tally.add("background", reading.background == scene.background)
    else:
        found = sorted(b.colour for b in reading.shapes[:2])
        tally.add("both colours", found == sorted(s.colour for s in scene.shapes))
        tally.add("two-shape background", reading.background == scene.background)


def scored_scenes(count: int = 96) -> list[Scene]:
    """The scored prompts' scenes: `count` one-shape, then `count` two-shape, every size and position written."""
    scenes = sample_scenes(PROMPT_SEED, count, two_shapes=0.0, mention=1.0)
    return scenes + sample_scenes(PROMPT_SEED + 1, count, two_shapes=1.0, mention=1.0)


def score(pipe, skips=range(1, 7), count: int = 96, steps: int = 20, guidance_scale: float = 7.5) -> dict:
    """Rates of right readings by skip, over `count` one-shape and `count` two-shape prompts, every one at seed
    SCORE_SEED: the cells a sweep of the same prompts at that seed renders (`clipskip sweep --seeds 0 --score
    shapes`, whose `shapes_rates` gives this table back), eight prompts to a comparison here for speed."""
    scenes = scored_scenes(count)
    tallies = {skip: Tally() for skip in skips}
    for start in tqdm(range(0, len(scenes), MAX_ROWS), desc="scoring", unit="comparison"):
        batch = scenes[start : start + MAX_ROWS]
        result = compare(
            pipe,
            [s.caption for s in batch],
            seed=SCORE_SEED,
            skips=list(skips),
            steps=steps,
            guidance_scale=guidance_scale,
        )
        for scene, row in zip(batch, result.rows, strict=True):
            for skip, image in row.images.items():
                judge(scene, image, tallies[skip])
    return {skip: tally.rates() for skip, tally in tallies.items()}


def table(rates: dict) -> str:
    """A Markdown table: one row per skip, one column per measure, in percent."""
    measures = list(next(iter(rates.values())))
    lines = ["| CLIP skip | " + " | ".join(measures) + " |", "|---" * (len(measures) + 1) + "|"]
    for skip, by_measure in rates.items():
        lines.append(f"| {skip} | " + " | ".join(f"{100 * by_measure[m]:.0f} %" for m in measures) + " |")
    return "\n".join(lines)


def misses(rates_at_1: dict[str, float]) -> list[str]:
    return [f"{m} {100 * rates_at_1[m]:.0f} % < {100 * t:.0f} %" for m, t in TARGETS.items() if rates_at_1[m] < t]


def main(argv=None) -> int:
    from ..loading import load_pipeline

    parser = argparse.ArgumentParser(prog="python -m clipskip.toy.score", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="embedded", help="any model clipskip loads (default %(default)s)")
    parser.add_argument("--count", type=int, default=96, help="prompts of each kind (default %(default)s)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=7.5)
    parser.add_argument("--json", help="also write the rates to this file")
    parser.add_argument(
        "--write-prompts",
        metavar="FILE",
        help="only write the scored prompts to FILE, one per line (for `clipskip sweep --score shapes --seeds 0`)",
    )
    args = parser.parse_args(argv)
    if args.write_prompts:
        with open(args.write_prompts, "w", encoding="utf-8") as f:
            f.write("".join(scene.caption + "\n" for scene in scored_scenes(args.count)))
        return 0
    rates = score(load_pipeline(args.model, device="cpu"), count=args.count, steps=args.steps, guidance_scale=args.cfg)
    print(table(rates))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rates, f, indent=1)
    failed = misses(rates[1])
    print("Targets at skip 1: " + ("all met" if not failed else "missed: " + "; ".join(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
