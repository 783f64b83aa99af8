"""The comparison grid: a column per skip value, a row per seed or prompt (its label at its left), headers above, a
caption below. Pure PIL.

Small cells are enlarged by a whole factor (nearest neighbour, so no pixel is invented) until they are at least
`MIN_CELL` pixels wide, so that a 64-px comparison is as readable as a 512-px one; the caption says so. Text grows with
the number of columns, since a wide grid is shown shrunk: it aims at `READ_PX` pixels when the grid is shown
`PHONE_WIDTH` pixels wide, within a share of the cell's width (header lines wrap, row labels wrap in their column), and
is never under `MIN_TEXT` pixels at the grid's own size. Characters that DejaVu Sans lacks (Chinese, Japanese, Korean,
most emoji) are drawn with fallback fonts where the system has them; see `Face`.
"""

import unicodedata
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

MIN_CELL = 256
GAP = 8
INK, MUTED, PAPER, WARN = (20, 20, 20), (90, 90, 90), (255, 255, 255), (170, 60, 0)
CAPTION_PROMPT_LINES = 3
MIN_TEXT = 12  # px at the grid's own size: the details; titles and the caption are a little larger
READ_PX, PHONE_WIDTH = 9, 390  # what the text aims at: 9 px when the whole grid is shown on a 390-px phone screen
# Tried in order for each character: DejaVu for Latin, Greek, Cyrillic and symbols; WenQuanYi Micro Hei (Debian's
# fonts-wqy-microhei) for Chinese, Japanese and Korean; Symbola (fonts-symbola) for emoji, in the text's colour.
REGULAR = ("DejaVuSans.ttf", "wqy-microhei.ttc", "Symbola_hint.ttf")
BOLD = ("DejaVuSans-Bold.ttf", "wqy-microhei.ttc", "Symbola_hint.ttf")
NONCHARACTER = "\U0010ffff"  # in no font: drawn as the font's .notdef glyph, the box that a missing glyph shows
HEADER_LINES = 3  # a header line wraps to at most this many lines in a narrow column, then ends with "…"


@lru_cache(maxsize=2)
def font_paths(bold: bool) -> tuple[str | None, ...]:
    """The files of BOLD or REGULAR that this system has, found once; (None,), Pillow's bundled font, if none."""
    paths = []
    for name in BOLD if bold else REGULAR:
        try:
            paths.append(ImageFont.truetype(name, MIN_TEXT).path)
        except OSError:
            continue  # not installed: its characters fall to the next font, or become "?"
    return tuple(paths) or (None,)


def load(path: str | None, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size) if path is None else ImageFont.truetype(path, size)


@lru_cache(maxsize=8)
def probe(path: str | None) -> ImageFont.FreeTypeFont:
    return load(path, 24)


def drawn(face: ImageFont.FreeTypeFont, char: str) -> tuple:
    mask = face.getmask(char)
    return mask.size, bytes(mask), face.getlength(char)


@lru_cache(maxsize=16384)
def has_glyph(path: str | None, char: str) -> bool:
    """Whether the font at `path` draws `char` as itself rather than as its .notdef box: compared as drawn at 24 px,
    since Pillow does not expose a font's character map."""
    return drawn(probe(path), char) != notdef(path)


@lru_cache(maxsize=8)
def notdef(path: str | None) -> tuple:
    return drawn(probe(path), NONCHARACTER)


@lru_cache(maxsize=16384)
def glyph_source(paths: tuple[str | None, ...], char: str) -> int | None:
    """The index in `paths` of the first font that has `char`; None where none has it."""
    return next((i for i, path in enumerate(paths) if has_glyph(path, char)), None)


class Face:
    """One size of a chain of fonts: each character is drawn with the first font that has it. A character that none
    has becomes "?", never a box; a mark or format character that none has (an emoji's variation selector, a
    zero-width joiner) is left out."""

    def __init__(self, paths: tuple[str | None, ...], size: int):
        self.paths, self.size = paths, size
        self.fonts = [load(path, size) for path in paths]

    def runs(self, text: str) -> list[tuple[str, ImageFont.FreeTypeFont]]:
        """`text` as consecutive runs, each with the font that draws it: one cached look-up per character."""
        runs, chars, current = [], [], 0
        for char in text:
            source = glyph_source(self.paths, char)
            if source is None:
                if unicodedata.category(char) in ("Mn", "Me", "Cf", "Cc"):
                    continue
                char, source = "?", 0
            if source != current and chars:
                runs.append(("".join(chars), self.fonts[current]))
                chars = []
            chars.append(char)
            current = source
        return [*runs, ("".join(chars), self.fonts[current])] if chars else runs

    def getlength(self, text: str) -> float:
        return sum(face.getlength(run) for run, face in self.runs(text))

    def getmetrics(self) -> tuple[int, int]:
        return self.fonts[0].getmetrics()


@lru_cache(maxsize=32)
def font(size: int, bold: bool = False) -> Face:
    """DejaVu Sans (bold or not) with CJK and emoji fallbacks, as far as the system has them (see REGULAR)."""
    return Face(font_paths(bold), size)


def draw_text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, face: Face, fill, centred=False) -> None:
    """`text` drawn run by run on one baseline, its first font's ascender at `xy`: its left end there, or its middle
    where `centred`."""
    runs = face.runs(text)
    x, y = xy
    if centred:
        x -= sum(part.getlength(run) for run, part in runs) / 2
    baseline = y + face.getmetrics()[0]
    for run, part in runs:
        draw.text((x, baseline), run, font=part, fill=fill, anchor="ls")
        x += part.getlength(run)


def text_width(text: str, face: Face) -> float:
    return face.getlength(text)


def fits(text: str, face: Face, width: float) -> bool:
    """Whether `text` fits in `width` pixels; one longer than `width` characters is not measured, since no glyph is
    narrower than a pixel."""
    return len(text) <= width and text_width(text, face) <= width


def longest_fitting(text: str, face: Face, width: float, suffix: str = "") -> int:
    """The length of the longest prefix of `text` that fits in `width` pixels followed by `suffix`, found by halving:
    a few measurements of at most `width` characters, since no glyph is narrower than a pixel, however long `text`."""
    text = text[: int(width) + 1]
    low, high = 0, len(text)  # the longest prefix that fits has a length in low..high
    while low < high:
        middle = (low + high + 1) // 2
        if text_width(text[:middle] + suffix, face) <= width:
            low = middle
        else:
            high = middle - 1
    return low


def fit(text: str, face: Face, width: float) -> str:
    """`text` cut with an ellipsis so that it fits in `width` pixels: the longest prefix that fits."""
    if fits(text, face, width):
        return text
    return text[: longest_fitting(text, face, width, "…")] + "…"


def wrap(text: str, face: Face, width: float, max_lines: int) -> list[str]:
    """`text` in at most `max_lines` lines of at most `width` pixels, the last ending with "…" if text is left over.
    Lines break between the phrases of a " · " list where the next phrase does not fit on the line, else between
    words, and inside a word wider than a line (Chinese and Japanese have no spaces). Stops after `max_lines` lines,
    so the cost grows with the text only through splitting it into words."""
    words, lines, line, i = text.split(), [], "", 0
    while i < len(words) and len(lines) < max_lines:
        word = words[i]
        if word == "·" and line:  # a phrase boundary: break here rather than inside the next phrase
            end = next((k for k in range(i + 1, len(words)) if words[k] == "·"), len(words))
            phrase = " ".join(words[i + 1 : end])
            if not fits(f"{line} · {phrase}", face, width):
                lines.append(line)
                line, i = "", i + 1
                continue
        candidate = f"{line} {word}" if line else word
        if fits(candidate, face, width):
            line, i = candidate, i + 1
        elif line:
            lines.append(line)
            line = ""
        else:  # a word wider than a line: as much of it as fits, the rest on the next line
            cut = max(1, longest_fitting(word, face, width))
            lines.append(word[:cut])
            words[i] = word[cut:]
    if line:
        lines.append(line)
    if i < len(words):  # text left over
        lines[-1] = fit(lines[-1] + "…", face, width)
    return lines


def line_height(face: Face) -> int:
    ascent, descent = face.getmetrics()
    return round((ascent + descent) * 1.2)


def blocked_cell(size: tuple[int, int], reason: str) -> Image.Image:
    """A grey stand-in for an image that was withheld, saying why, so it is never mistaken for a black picture."""
    cell = Image.new("RGB", size, (128, 128, 128))
    draw = ImageDraw.Draw(cell)
    face, title = font(max(8, min(size) // 14)), font(max(10, min(size) // 8), bold=True)
    lines = [(title, "Blocked")] + [(face, line) for line in wrap(reason, face, size[0] * 0.9, 4)]
    y = (size[1] - sum(line_height(f) for f, _ in lines)) / 2
    for face, line in lines:
        draw_text(draw, (size[0] / 2, y), line, face, PAPER, centred=True)
        y += line_height(face)
    return cell


def cell_scale(width: int) -> int:
    """The whole factor a cell `width` pixels wide is enlarged by: the least that makes it MIN_CELL wide or more."""
    return -(-MIN_CELL // width) if width < MIN_CELL else 1


def grid_width(cell_width: int, columns: int) -> int:
    """The width of `columns` cells, each `cell_width` pixels wide before enlarging, with their gaps: the grid's
    width without a row-label column."""
    return columns * cell_width * cell_scale(cell_width) + (columns + 1) * GAP


def text_sizes(cell_w: int, columns: int) -> tuple[int, int, int, int]:
    """Font sizes of the titles, of the other header lines and row labels, of badges and of the caption, for `columns`
    cells `cell_w` pixels wide: READ_PX when the grid is shown PHONE_WIDTH wide, as far as "CLIP skip 12" and
    "layer 12 of 12" still fit a column on one line (a cell's width over 7.2 and 7.5) and "same as skip 12" a badge,
    and never under MIN_TEXT."""
    aim = READ_PX * (columns * (cell_w + GAP) + GAP) / PHONE_WIDTH
    detail = round(min(max(aim, MIN_TEXT, cell_w / 20), cell_w / 7.5))
    title = round(min(max(1.2 * aim, MIN_TEXT + 2, cell_w / 16), cell_w / 7.2))
    badge = round(min(detail, max(MIN_TEXT, cell_w / 9)))
    caption = round(min(max(aim, MIN_TEXT + 1), title))
    return title, detail, badge, caption


def caption_size(cell_width: int, columns: int) -> int:
    """The caption's font size in a grid of `columns` cells `cell_width` pixels wide before enlarging: for a footer."""
    return text_sizes(cell_width * cell_scale(cell_width), columns)[3]


def render_grid(
    rows: list[list[Image.Image]],
    headers: list[list[str]],
    caption: list[str],
    warnings: list[str] = (),
    *,
    row_labels: list[str] | None = None,
    badges: dict[tuple[int, int], str] | None = None,
    footer: Image.Image | None = None,
) -> Image.Image:
    """`rows` of images under one header per column (first line bold); a label at the left of each row when given,
    `badges[(row, column)]` written on cells, then `caption`, `warnings` and `footer` below."""
    # 1. Check inputs
    columns = len(headers)
    if not rows or any(len(row) != columns for row in rows) or not columns:
        raise ValueError(f"need one header per column and {columns} images in every row")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"need one label per row, got {len(row_labels)} labels for {len(rows)} rows")
    width, height = rows[0][0].size
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            if image.size != (width, height):
                size = f"{image.size[0]}×{image.size[1]}"
                raise ValueError(f"all images must be {width}×{height}; row {r + 1}, column {c + 1} is {size}")
    scale = cell_scale(width)
    cell_w, cell_h = width * scale, height * scale
    title_size, detail_size, badge_size, caption_size = text_sizes(cell_w, columns)
    title_face, detail_face, caption_face = font(title_size, bold=True), font(detail_size), font(caption_size)

    # 2. Row labels in a column at the left, as wide as the widest (at most a cell), wrapped to the row's height
    labels, left = [[] for _ in rows], GAP
    if row_labels:
        label_w = max(min(text_width(label[: cell_w + 1], detail_face), cell_w) for label in row_labels)
        most = max(1, cell_h // line_height(detail_face))
        labels = [wrap(label, detail_face, label_w, most) for label in row_labels]
        left += round(label_w) + GAP
    grid_w = left + columns * (cell_w + GAP)
    text_w = grid_w - 2 * GAP

    # 3. Header lines wrapped to the column; line j of every header starts at the same height
    faces = [title_face] + [detail_face] * (max(len(h) for h in headers) - 1)
    wrapped = [[wrap(text, faces[j], cell_w, HEADER_LINES) for j, text in enumerate(h)] for h in headers]
    counts = [max(len(w[j]) for w in wrapped if j < len(w)) for j in range(len(faces))]
    line_tops, y = [], GAP
    for count, face in zip(counts, faces, strict=True):
        line_tops.append(y)
        y += count * line_height(face)
    header_h = y + GAP
    row_tops = [header_h + r * (cell_h + GAP) for r in range(len(rows))]
    cells_bottom = row_tops[-1] + cell_h

    # 4. Caption lines, wrapped to the grid's width
    if scale > 1:
        caption = [*caption, f"cells shown enlarged {scale}× (nearest neighbour) from {width}×{height}"]
    styled = [(caption[0], INK, CAPTION_PROMPT_LINES)] if caption else []  # the prompt, darker and longer
    styled += [(text, MUTED, 2) for text in caption[1:]] + [(f"⚠ {text}", WARN, 2) for text in warnings]
    caption_lines = [
        (line, colour) for text, colour, most in styled for line in wrap(text, caption_face, text_w, most)
    ]
    caption_h = GAP + len(caption_lines) * line_height(caption_face) + GAP
    footer_h = footer.height + GAP if footer is not None else 0

    # 5. Headers, row labels and cells
    grid = Image.new("RGB", (grid_w, cells_bottom + caption_h + footer_h), PAPER)
    draw = ImageDraw.Draw(grid)
    for c, header in enumerate(wrapped):
        x = left + c * (cell_w + GAP) + cell_w / 2
        for j, lines in enumerate(header):
            face, colour = (title_face, INK) if j == 0 else (detail_face, MUTED)
            for k, line in enumerate(lines):
                draw_text(draw, (x, line_tops[j] + k * line_height(face)), line, face, colour, centred=True)
    for r, (row, label, top) in enumerate(zip(rows, labels, row_tops, strict=True)):
        for k, line in enumerate(label):
            draw_text(draw, (GAP, top + k * line_height(detail_face)), line, detail_face, INK)
        for c, image in enumerate(row):
            x = left + c * (cell_w + GAP)
            grid.paste(image.convert("RGB").resize((cell_w, cell_h), Image.NEAREST), (x, top))
            if badges and (r, c) in badges:
                draw_badge(draw, badges[(r, c)], font(badge_size), (x + GAP, top + cell_h - GAP), cell_w - 2 * GAP)

    # 6. Caption and footer
    y = cells_bottom + GAP
    for text, colour in caption_lines:
        draw_text(draw, (GAP, y), text, caption_face, colour)
        y += line_height(caption_face)
    if footer is not None:
        grid.paste(footer, (GAP, y))
    return grid


def draw_badge(draw: ImageDraw.ImageDraw, text: str, face: Face, bottom_left: tuple[int, int], width: int) -> None:
    """`text` in white on a dark box whose bottom left corner is at `bottom_left`, wrapped to two lines of `width`."""
    lines = wrap(text, face, width - 8, 2)
    x, bottom = bottom_left
    top = bottom - len(lines) * line_height(face)
    draw.rectangle((x - 4, top - 3, x + max(text_width(line, face) for line in lines) + 4, bottom + 3), fill=INK)
    for k, line in enumerate(lines):
        draw_text(draw, (x, top + k * line_height(face)), line, face, PAPER)
