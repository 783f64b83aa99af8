import numpy as np

from clipskip.plots import similarity_figure


def metadata(skips, *cosines, prompts=("a red circle", "a blue square")):
    entries = [{"prompt": p, "reference_skip": 1, "cosine": list(c)} for p, c in zip(prompts, cosines, strict=False)]
    return {"skips": skips, "embedding_similarity": entries}


def test_each_prompt_is_a_line_over_every_layer_with_the_compared_skips_marked_and_labelled():
    first = [1.0, 0.97, 0.95, 0.9, 0.88, 0.85]
    second = [1.0, 0.99, 0.96, 0.93, 0.91, 0.8]
    axes = similarity_figure(metadata([1, 4, 6], first, second)).axes[0]
    lines = [line for line in axes.get_lines() if line.get_linestyle() == "-"]
    assert [list(line.get_ydata()) for line in lines] == [first, second]
    assert [list(line.get_xdata()) for line in lines] == [list(range(1, 7))] * 2
    marks = [collection.get_offsets().tolist() for collection in axes.collections]
    assert marks == [[[1, 1.0], [4, 0.9], [6, 0.85]], [[1, 1.0], [4, 0.93], [6, 0.8]]]
    assert [text.get_text() for text in axes.texts if text.get_text() != "native"] == ["1.000", "0.900", "0.850"]
    assert [label.get_text() for label in axes.get_legend().get_texts()] == ["a red circle", "a blue square"]


def test_the_y_axis_spans_the_data_not_minus_one_to_one():
    low, high = similarity_figure(metadata([1, 2], [1.0, 0.9, 0.8])).axes[0].get_ylim()
    assert 0.7 < low < 0.8 and 1.0 < high <= 1.1
    low, _ = similarity_figure(metadata([1], [1.0, -0.99])).axes[0].get_ylim()
    assert low == -1.0


def test_the_native_skip_is_a_dashed_line_and_a_long_prompt_is_cut_in_the_legend():
    long = "a " * 60
    axes = similarity_figure(metadata([2], [0.9, 1.0, 0.9], [0.8, 1.0, 0.7], prompts=("", long))).axes[0]
    dashed = [line for line in axes.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and np.allclose(dashed[0].get_xdata(), 1)
    labels = [label.get_text() for label in axes.get_legend().get_texts()]
    assert labels[0] == "(empty)" and len(labels[1]) == 48 and labels[1].endswith("…")


def test_fractional_and_per_encoder_columns_are_not_marked_on_the_layer_axis():
    axes = similarity_figure(metadata([2, "1.5", "L1/G2"], [1.0, 0.9, 0.8])).axes[0]
    assert [collection.get_offsets().tolist() for collection in axes.collections] == [[[2, 0.9]]]
    assert len(similarity_figure(metadata(["1.5"], [1.0, 0.9])).axes[0].collections) == 0
