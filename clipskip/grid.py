"""The comparison grid: a column per skip value, a row per seed or prompt, headers above, a caption below. Pure PIL.

Small cells are enlarged by a whole factor (nearest neighbour, so no pixel is invented) until they are at least
`MIN_CELL` pixels wide, so that a 64-px comparison is as readable as a 512-px one; the caption says so.
"""

from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

MIN_CELL = 256
GAP = 8
INK, MUTED, PAPER, WARN = (20, 20, 20), (90, 90, 90), (255, 255, 255), (170, 60, 0)
CAPTION_PROMPT_LINES = 3


@lru_cache(maxsize=32)
def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """DejaVu Sans where the system has it (wide Unicode coverage), else Pillow's bundled font."""
    try:
        return ImageFont.truetype("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size)


def text_width(text: str, face: ImageFont.FreeTypeFont) -> float:
    return face.getlength(text)


def fit(text: str, face: ImageFont.FreeTypeFont, width: float) -> str:
    """`text` cut with an ellipsis so that it fits in `width` pixels: the longest prefix that fits, found by halving
    (a few measurements of at most `width` characters, since no glyph is narrower than a pixel, however long)."""
    if text_width(text, face) <= width:
        return text
    text = text[: int(width) + 1]
    low, high = 0, len(text)  # the longest prefix that fits with its ellipsis has a length in low..high
    while low < high:
        middle = (low + high + 1) // 2
        if text_width(text[:middle] + "…", face) <= width:
            low = middle
        else:
            high = middle - 1
    return text[:low] + "…"


def wrap(text: str, face: ImageFont.FreeTypeFont, width: float, max_lines: int) -> list[str]:
    """Greedy word wrap to `width`; a last line that would overflow `max_lines` ends with an ellipsis."""
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if text_width(candidate, face) <= width or not line:
            line = candidate
        else:
            lines.append(line)
            line = word
    lines.append(line)
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [fit(" ".join(lines[max_lines - 1 :]) + " …", face, width)]
    return [fit(line, face, width) for line in lines]


def line_height(face: ImageFont.FreeTypeFont) -> int:
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
        draw.text((size[0] / 2, y), line, font=face, fill=PAPER, anchor="ma")
        y += line_height(face)
    return cell


def cell_scale(width: int) -> int:
    """The whole factor a cell `width` pixels wide is enlarged by: the least that makes it MIN_CELL wide or more."""
    return -(-MIN_CELL // width) if width < MIN_CELL else 1


def grid_width(cell_width: int, columns: int) -> int:
    """The width of a grid of `columns` cells, each `cell_width` pixels wide before enlarging."""
    return columns * cell_width * cell_scale(cell_width) + (columns + 1) * GAP


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
    """`rows` of images under one header per column (first line bold); a label band over each row when given,
    `badges[(row, column)]` written on cells, then `caption`, `warnings` and `footer` below."""
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
    grid_w = grid_width(width, columns)
    text_w = grid_w - 2 * GAP

    # 1. Fonts scale with the cell so that labels read the same at any size
    title_face = font(max(14, min(36, cell_w // 12)), bold=True)
    detail_face = font(max(12, min(26, cell_w // 18)))
    caption_face = font(max(13, min(28, grid_w // 70)))
    badge_face = font(max(11, min(22, cell_w // 20)))
    lines = max(len(h) for h in headers)
    header_h = GAP + line_height(title_face) + (lines - 1) * line_height(detail_face) + GAP
    labels = [wrap(label, detail_face, text_w, 2) for label in row_labels] if row_labels else [[] for _ in rows]
    row_tops, y = [], header_h
    for label in labels:
        row_tops.append(y + len(label) * line_height(detail_face))
        y = row_tops[-1] + cell_h + GAP
    cells_bottom = y - GAP

    # 2. Caption lines, wrapped to the grid's width
    if scale > 1:
        caption = [*caption, f"cells shown enlarged {scale}× (nearest neighbour) from {width}×{height}"]
    styled = [(caption[0], INK, CAPTION_PROMPT_LINES)] if caption else []  # the prompt, darker and longer
    styled += [(text, MUTED, 2) for text in caption[1:]] + [(f"⚠ {text}", WARN, 2) for text in warnings]
    caption_lines = [
        (line, colour) for text, colour, most in styled for line in wrap(text, caption_face, text_w, most)
    ]
    caption_h = GAP + len(caption_lines) * line_height(caption_face) + GAP
    footer_h = footer.height + GAP if footer is not None else 0

    # 3. Headers, row labels and cells
    grid = Image.new("RGB", (grid_w, cells_bottom + caption_h + footer_h), PAPER)
    draw = ImageDraw.Draw(grid)
    for c, header in enumerate(headers):
        x, y = GAP + c * (cell_w + GAP), GAP
        for j, text in enumerate(header):
            face, colour = (title_face, INK) if j == 0 else (detail_face, MUTED)
            draw.text((x + cell_w / 2, y), fit(text, face, cell_w), font=face, fill=colour, anchor="ma")
            y += line_height(face)
    for r, (row, label, top) in enumerate(zip(rows, labels, row_tops, strict=True)):
        for k, line in enumerate(label):
            draw.text((GAP, top - (len(label) - k) * line_height(detail_face)), line, font=detail_face, fill=INK)
        for c, image in enumerate(row):
            x = GAP + c * (cell_w + GAP)
            grid.paste(image.convert("RGB").resize((cell_w, cell_h), Image.NEAREST), (x, top))
            if badges and (r, c) in badges:
                text = fit(badges[(r, c)], badge_face, cell_w - 2 * GAP)
                box = draw.textbbox((x + GAP, top + cell_h - GAP), text, font=badge_face, anchor="ld")
                draw.rectangle((box[0] - 4, box[1] - 3, box[2] + 4, box[3] + 3), fill=INK)
                draw.text((x + GAP, top + cell_h - GAP), text, font=badge_face, fill=PAPER, anchor="ld")

    # 4. Caption and footer
    y = cells_bottom + GAP
    for text, colour in caption_lines:
        draw.text((GAP, y), text, font=caption_face, fill=colour)
        y += line_height(caption_face)
    if footer is not None:
        grid.paste(footer, (GAP, y))
    return grid
