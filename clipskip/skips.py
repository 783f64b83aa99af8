"""A column's CLIP skip: one number for every text encoder (`2`, `1.5`) or one per CLIP encoder (`L1/G2`). Pure Python.

Whole skips are what they always were: `Skip` 2 equals and hashes as the int 2, and is written as 2 in JSON. A
fractional skip N + f (0 < f < 1, at most two decimals) blends two neighbouring layers, `(1 − f)·hidden_states[-N] +
f·hidden_states[-(N+1)]`, then the final norm where the family applies it: SD.Next's definition of its float clip skip
(`../shared/prompt-syntax.md`). A per-encoder skip gives CLIP-L (`L`) and CLIP-G (`G`) each its own value, as
AUTOMATIC1111 does on SDXL with "Clip skip SDXL: CLIP-L too" (CLIP-L at its N, CLIP-G at 2); `L2/G2` is 2.

Values are kept in hundredths, as ints: parsing and comparing never go through binary floats.
"""

import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import total_ordering

LETTERS = ("L", "G")  # the CLIP encoders a skip can name, in the order the UNet takes them (families.Family.labels)
ENCODER_NAMES = {"L": "CLIP-L", "G": "CLIP-G"}
ATTRIBUTES = {"text_encoder": "L", "text_encoder_2": "G"}  # a Python mapping may name the pipeline's attributes
MAX_SKIP_CHARS = 24  # "L12.25/G12.25" is 13; room for spaces
MAX_LIST_CHARS = 400  # a list of skips as text ("1, 1.5, L1/G2, …"); 32 columns of "L12.25/G12.25, " are 480: enough
NUMBER = r"([0-9]{1,3})(?:\.([0-9]{1,2}))?"
UNIFORM = re.compile(NUMBER)
PER_ENCODER = re.compile(rf"([LG])\s*{NUMBER}\s*/\s*([LG])\s*{NUMBER}", re.IGNORECASE)
ALSO = '(or a fraction with up to two decimals like 1.5, or one per encoder like "L1/G2")'
A1111_SDXL = "a1111-sdxl"  # the preset's name in the CLI, links and the API


@total_ordering
@dataclass(frozen=True, eq=False)
class Skip:
    """One column's skip. `hundredths` holds one value (every encoder) or one per letter of LETTERS, ×100.

    Equal values are equal whatever was written (`L2/G2` is 2, `1.50` is 1.5); a whole one equals and hashes as its
    int. Ordered by each encoder's value in LETTERS order (`L1/G2` < 2 < `L3/G2`)."""

    hundredths: tuple[int, ...]

    def __post_init__(self):
        if len(self.hundredths) == len(LETTERS) and len(set(self.hundredths)) == 1:  # the same for every encoder
            object.__setattr__(self, "hundredths", self.hundredths[:1])

    @property
    def uniform(self) -> bool:
        return len(self.hundredths) == 1

    @property
    def whole(self) -> bool:
        """One whole number for every encoder: a skip as this app always had them."""
        return self.uniform and self.hundredths[0] % 100 == 0

    def parts(self, labels: tuple[str, ...]) -> tuple[Fraction, ...]:
        """The value each encoder labelled `labels` (a family's, e.g. ("L", "G")) takes, as exact fractions.

        Raises ValueError for a per-encoder skip on a family with another set of CLIP encoders (SD 1.x, 2.x: one)."""
        if self.uniform:
            return tuple(Fraction(self.hundredths[0], 100) for _ in labels)
        if tuple(labels) != LETTERS:
            raise ValueError(
                f"CLIP skip {self} gives each CLIP text encoder its own layer, but this model has only one text "
                "encoder; use one number, like 2 or 1.5"
            )
        return tuple(Fraction(h, 100) for h in self.hundredths)

    def _key(self) -> tuple[int, ...]:
        return self.hundredths * len(LETTERS) if self.uniform else self.hundredths

    def __eq__(self, other):
        if isinstance(other, numbers.Integral) and not isinstance(other, bool):
            return self.whole and self.hundredths[0] == 100 * int(other)
        return isinstance(other, Skip) and self.hundredths == other.hundredths

    def __lt__(self, other):
        if isinstance(other, numbers.Integral) and not isinstance(other, bool):
            other = Skip((100 * int(other),))
        if not isinstance(other, Skip):
            return NotImplemented
        return self._key() < other._key()

    def __hash__(self):
        return hash(self.hundredths[0] // 100) if self.whole else hash(self.hundredths)

    def __str__(self):
        if self.uniform:
            return number_text(self.hundredths[0])
        return "/".join(f"{letter}{number_text(h)}" for letter, h in zip(LETTERS, self.hundredths, strict=True))

    def __repr__(self):
        return f"Skip({str(self)!r})"

    @property
    def json(self) -> int | str:
        """As the manifest and the API write it: an int for a whole skip, else its text ("1.5", "L1/G2")."""
        return self.hundredths[0] // 100 if self.whole else str(self)

    @property
    def key(self) -> "int | Skip":
        """As results are keyed by it: the int for a whole skip (so callers' arithmetic on skips still works), else
        the Skip itself."""
        return self.hundredths[0] // 100 if self.whole else self

    @property
    def file_text(self) -> str:
        """For a file name: "2", "1.5", "L1-G2" (no slash)."""
        return str(self).replace("/", "-")


def number_text(hundredths: int) -> str:
    whole, rest = divmod(hundredths, 100)
    return str(whole) if not rest else f"{whole}.{rest:02d}".rstrip("0")


def from_number(value: int) -> Skip:
    return Skip((100 * value,))


def hundredths_of(text: str) -> int | None:
    """ "1.5" → 150, "2" → 200; None unless the text is up to three digits, and up to two decimals."""
    match = UNIFORM.fullmatch(text)
    if match is None:
        return None
    return 100 * int(match[1]) + int((match[2] or "0").ljust(2, "0"))


def parse_skip(value, name: str = "each CLIP skip", shown=repr) -> Skip:
    """A column's skip from what a visitor or caller gave: an int (2, never True), a float with up to two decimals
    (1.5; read from its shortest decimal form, never compared as binary), text ("2", "1.5", "L1/G2", "l1.5/g2"), or a
    Python mapping of each CLIP encoder's value by letter or attribute name ({"L": 1, "G": 2}, {"text_encoder": 1,
    "text_encoder_2": 2}). Text is cut at MAX_SKIP_CHARS before it is read, and read by one regular expression (linear
    time). The range is not checked here (`request.check_skips` knows the model). Raises ValueError naming `name`,
    showing a bad value with `shown` (`request.short_repr` cuts it short)."""
    if isinstance(value, Skip):
        return value
    if isinstance(value, Mapping):
        return per_encoder_mapping(value, name, shown)
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number, not {value}")
    if isinstance(value, numbers.Integral):
        if not -(10**6) < value < 10**6:
            return Skip((100 * 10**6,))  # out of any range: the caller's range check says so
        return from_number(int(value))
    if isinstance(value, numbers.Real):
        return Skip((float_hundredths(value, name),))
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a whole number, not {shown(value)}")
    text = value.strip()
    if len(text) > MAX_SKIP_CHARS:
        raise ValueError(f"{name} must be a whole number {ALSO}; {len(value):,} characters is too long for one")
    if (hundredths := hundredths_of(text)) is not None:
        return Skip((hundredths,))
    match = PER_ENCODER.fullmatch(text)
    if match is None:
        raise ValueError(f"{name} must be a whole number, not {shown(text)} {ALSO}")
    first, second = match[1].upper(), match[4].upper()
    if first == second:
        raise ValueError(f'{name} {text!r} names {ENCODER_NAMES[first]} twice; give L and G one each, like "L1/G2"')
    values = {first: hundredths_of(match[2] + (f".{match[3]}" if match[3] else "")), second: None}
    values[second] = hundredths_of(match[5] + (f".{match[6]}" if match[6] else ""))
    return Skip(tuple(values[letter] for letter in LETTERS))


def float_hundredths(value, name: str) -> int:
    """A float's value in hundredths, read from its shortest decimal form (repr), so 2.1 is 210, never 209.99…"""
    try:
        decimal = Decimal(repr(float(value)))
    except (InvalidOperation, OverflowError, ValueError):
        decimal = None
    if decimal is None or not decimal.is_finite():
        raise ValueError(f"{name} must be a whole number, not {value!r} {ALSO}")
    if abs(decimal) >= 10**6:
        return 100 * 10**6  # out of any range: the caller says so
    scaled = decimal * 100
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{name} {value!r} has more than two decimals; use at most two, like 1.5 or 2.25")
    return int(scaled)


def per_encoder_mapping(value: Mapping, name: str, shown=repr) -> Skip:
    if len(value) != len(LETTERS):
        raise ValueError(f'{name} as a mapping gives L and G one value each, like {{"L": 1, "G": 2}}')
    values = {}
    for key, part in value.items():
        letter = ATTRIBUTES.get(key, key.upper() if isinstance(key, str) and len(key) == 1 else None)
        if letter not in LETTERS:
            raise ValueError(
                f"{name}: unknown text encoder {shown(key)}; use L and G, or text_encoder and text_encoder_2"
            )
        skip = parse_skip(part, f"{name} for {ENCODER_NAMES[letter]}", shown)
        if not skip.uniform:
            raise ValueError(f"{name} for {ENCODER_NAMES[letter]} must be one number, not {skip}")
        values[letter] = skip.hundredths[0]
    if len(values) != len(LETTERS):
        raise ValueError(f"{name} as a mapping names one text encoder twice; give L and G one value each")
    return Skip(tuple(values[letter] for letter in LETTERS))


def skip_texts(text: str, name: str = "skips") -> list[str]:
    """The parts of a comma-separated list of skips ("1, 1.5, L1/G2"), blanks dropped; its length is checked before
    it is split. Raises ValueError naming `name`."""
    if len(text) > MAX_LIST_CHARS:
        raise ValueError(
            f"{name} is {len(text):,} characters long; at most {MAX_LIST_CHARS} (values like 1.5 or L1/G2, separated "
            "by commas)"
        )
    return [part.strip() for part in text.split(",") if part.strip()]


def a1111_sdxl() -> tuple[Skip, ...]:
    """The columns AUTOMATIC1111 renders on SDXL for its Clip skip 1 to 4 with "Clip skip SDXL: CLIP-L too" on:
    CLIP-L at N, CLIP-G at its penultimate layer (2). Without that option it renders every SDXL image at 2."""
    return tuple(Skip((100 * n, 200)) for n in range(1, 5))


def layer_words(skip: Fraction, layers: int) -> str:
    """The layer a skip selects in an encoder of `layers` layers: "layer 11" or "between layers 11 and 10"."""
    whole = int(skip)
    if whole == skip:
        return f"layer {layers - whole + 1}"
    return f"between layers {layers - whole + 1} and {layers - whole}"
