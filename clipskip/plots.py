"""Pictures of a comparison's numbers, drawn with matplotlib's object API (no pyplot: safe in a server's threads).

Pure drawing: takes the metadata `compare` wrote, imports neither torch nor gradio.
"""

from matplotlib.figure import Figure

INK = "#8a8f98"  # axes and labels: readable on a light page and on a dark one (the figure itself is transparent)
SERIES = ["#f97316", "#3b82f6", "#10b981", "#a855f7", "#ef4444", "#eab308", "#06b6d4", "#ec4899"]
PROMPT_CHARS = 48  # a prompt in the legend is cut to this


def similarity_figure(metadata: dict) -> Figure:
    """How close each layer's conditioning is to the native layer's (`metadata["embedding_similarity"]`: cosine
    similarity over the prompt's real tokens, one entry per prompt), against CLIP skip 1..layers: one line per prompt,
    the compared skips (`metadata["skips"]`) marked with their value, the native skip with a dashed line.

    The y axis spans the data (with a margin), not -1..1, so small differences show. 7x3.4 inches at 100 dpi."""
    figure = Figure(figsize=(7, 3.4), dpi=100, layout="constrained")
    figure.patch.set_alpha(0)
    axes = figure.add_subplot()
    axes.patch.set_alpha(0)
    entries = metadata["embedding_similarity"]
    compared = [skip for skip in metadata["skips"] if isinstance(skip, int)]  # fractional, per-encoder: no layer
    values = [value for entry in entries for value in entry["cosine"]]
    for i, entry in enumerate(entries):
        colour = SERIES[i % len(SERIES)]
        skips = range(1, len(entry["cosine"]) + 1)
        text = entry["prompt"] or "(empty)"
        label = text if len(text) <= PROMPT_CHARS else text[: PROMPT_CHARS - 1] + "…"
        axes.plot(skips, entry["cosine"], color=colour, linewidth=1.6, marker=".", markersize=4, label=label)
        marked = [(skip, entry["cosine"][skip - 1]) for skip in compared if skip <= len(entry["cosine"])]
        if marked:
            axes.scatter(*zip(*marked, strict=True), s=46, color=colour, edgecolors="white", linewidths=0.8, zorder=3)
        if i == 0:  # the values once, for the first prompt: more would overlap
            for skip, value in marked:
                axes.annotate(
                    f"{value:.3f}", (skip, value), textcoords="offset points", xytext=(0, 7), ha="center",
                    fontsize=8, color=INK,
                )  # fmt: skip
    if entries:
        native = entries[0]["reference_skip"]
        axes.axvline(native, color=INK, linestyle="--", linewidth=0.8)
        axes.annotate(
            "native", (native, 0), xycoords=("data", "axes fraction"), xytext=(3, 3), textcoords="offset points",
            fontsize=8, color=INK,
        )  # fmt: skip
    low, high = (min(values), max(values)) if values else (-1.0, 1.0)
    margin = max(0.02, (high - low) * 0.12)
    axes.set_ylim(max(-1.0, low - margin), min(1.0, high + margin) + margin)  # room above for the values
    layers = max((len(entry["cosine"]) for entry in entries), default=12)
    axes.set_xticks(range(1, layers + 1))
    axes.set_xlabel("CLIP skip (compared skips marked)", color=INK)
    axes.set_ylabel("cosine similarity to native", color=INK)
    axes.tick_params(colors=INK, labelsize=8)
    for spine in axes.spines.values():
        spine.set_color(INK)
    axes.grid(alpha=0.25, color=INK)
    if len(entries) > 1:
        axes.legend(fontsize=8, frameon=False, labelcolor=INK, loc="lower left")
    return figure
