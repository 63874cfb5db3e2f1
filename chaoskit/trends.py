"""A figure's trend across nightly runs, as one readable inline SVG plot.

:func:`trend_svg` draws one figure of one experiment (``recovery_s``,
``fault.p95_ms``, ``whole.availability``...) over the earlier nights and
tonight, so that a reader sees at a glance how far tonight moved and against
what it was judged:

* the **y axis** is linear, in the figure's own unit, with 3 to 5 labelled
  ticks; for times and counts it starts at 0, so a value 13 times another is
  drawn 13 times as high (availability, given as a ratio, is shown in percent
  over a range that holds every value, the band and the bound);
* the **x axis** has one slot per earlier night, oldest first, labelled by its
  date (``12-04`` for ``20261204T0300Z``), then a shaded slot **tonight**;
* each night's runs are **dots** in its slot, with a short horizontal tick at
  the night's median; each dot's exact value is its tooltip;
* the baseline's **noise band** is a shaded rectangle across the earlier
  nights, its range written in the legend;
* the **bound**, the worst value the judgement allowed, is a dashed line
  labelled with its value;
* when the figure **regressed**, tonight's dots are red and tonight's worst
  value is written against the bound (``4.20 s > bound 3.10 s``).

The module is pure: strings in, an ``<svg>`` element out, no JavaScript, no
external resources, every text escaped.
"""

from __future__ import annotations

import html
import math
import re
import statistics
from collections.abc import Callable, Sequence

WIDTH = 420
HEIGHT = 180
TOP = 24
"""The plot area's top edge; the figure's name and the regression note sit above it."""
BOTTOM = 130
"""The plot area's bottom edge; the night labels and the legend sit below it."""
RIGHT = WIDTH - 8
FONT = 10
TITLE_FONT = 11
CHAR = 0.62
"""A sans-serif character's width, in font sizes (digits are about 0.56; this errs wide)."""
TONIGHT_MIN_WIDTH = 52.0

INK = "#2d3748"
MUTED = "#718096"
GRID = "#e2e8f0"
NIGHT_DOT = "#4a5568"
TONIGHT_DOT = "#1a202c"
RED = "#c53030"
BAND_FILL = "#bee3f8"
BOUND_INK = "#b7791f"
TONIGHT_FILL = "#edf2f7"
TONIGHT_RED_FILL = "#fff5f5"

_AXIS_TITLES = {"s": "seconds (s)", "ms": "milliseconds (ms)", "%": "availability (%)", "": "count"}
_STAMP = re.compile(r"^\d{4}-?(\d{2})-?(\d{2})(?:$|[T _](\d{2}):?(\d{2})?)")


def trend_svg(
    figure: str,
    unit: str,
    nights: Sequence[tuple[str, Sequence[float]]],
    tonight: Sequence[float],
    band: tuple[float, float] | None,
    bound: float | None,
    regressed: bool,
    higher_is_worse: bool = True,
    of_median: bool = False,
) -> str:
    """The ``<svg>`` element of ``figure``'s trend: the earlier ``nights``, then ``tonight``.

    ``nights`` are oldest first, each its label (a timestamp such as ``20261204T0300Z``) and its runs' values.

    ``unit`` is ``"s"``, ``"ms"``, ``"%"`` (availability, given as a ratio 0..1 and shown in percent) or ``""``
    (a count). ``band`` is the baseline's noise band (low, high) and ``bound`` the worst value the judgement
    allowed, both in the figure's own units (a ratio for availability), or None. ``higher_is_worse`` is False
    for availability: its worst value is the lowest, and a regression is written ``<`` its bound. With
    ``of_median`` the bound is one tonight's median had to keep (the rank test), and a regression writes the
    median against it.
    """
    scale = 100.0 if unit == "%" else 1.0
    shown_nights = [(label, [v * scale for v in values]) for label, values in nights]
    shown_tonight = [v * scale for v in tonight]
    shown_band = None if band is None else (min(band) * scale, max(band) * scale)
    shown_bound = None if bound is None else bound * scale

    everything = [v for _, values in shown_nights for v in values] + shown_tonight
    everything += [] if shown_band is None else list(shown_band)
    everything += [] if shown_bound is None else [shown_bound]
    ticks = _ticks(everything, percent=unit == "%", count=unit == "")
    low, high = ticks[0], ticks[-1]
    decimals = _decimals(ticks[1] - ticks[0])
    tick_labels = [_with_unit(f"{t:.{decimals}f}", unit) for t in ticks]

    left = 8 + FONT + 6 + max(_width(t, FONT) for t in tick_labels) + 6  # axis title, gap, tick labels, gap

    def y_of(value: float) -> float:
        return BOTTOM - (value - low) / (high - low) * (BOTTOM - TOP)

    # The slots: one per earlier night, then tonight's, at least wide enough for its label.
    plot_width = RIGHT - left
    tonight_width = max(plot_width / (len(shown_nights) + 1), TONIGHT_MIN_WIDTH)
    slot = (plot_width - tonight_width) / len(shown_nights) if shown_nights else 0.0
    tonight_left = left + slot * len(shown_nights)

    e = html.escape
    parts: list[str] = []
    add = parts.append
    name = f"{figure}: {len(shown_nights)} earlier night(s) and tonight" + (", REGRESSED" if regressed else "")
    add(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="trend-plot" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{e(name)}" font-family="sans-serif" '
        f'font-size="{FONT}">'
    )
    add(f"<title>{e(name)}</title>")
    add(f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>')

    # Tonight's column, behind everything else.
    column = TONIGHT_RED_FILL if regressed else TONIGHT_FILL
    add(
        f'<rect class="tonight-column" x="{tonight_left:.1f}" y="{TOP}" width="{tonight_width:.1f}" '
        f'height="{BOTTOM - TOP}" fill="{column}"/>'
    )

    # The baseline band, across the earlier nights (across tonight's slot when there is none).
    if shown_band is not None:
        band_left, band_width = (left, slot * len(shown_nights)) if shown_nights else (tonight_left, tonight_width)
        top, bottom = y_of(shown_band[1]), y_of(shown_band[0])
        add(
            f'<rect class="band" x="{band_left:.1f}" y="{top:.1f}" '
            f'width="{band_width:.1f}" height="{max(bottom - top, 1.0):.1f}" fill="{BAND_FILL}" '
            f'fill-opacity="0.7"><title>baseline band {e(_value(shown_band[0], unit))} to '
            f"{e(_value(shown_band[1], unit))}</title></rect>"
        )

    # The y axis: grid lines, tick labels, the axis and its title.
    for tick, label in zip(ticks, tick_labels, strict=True):
        y = y_of(tick)
        add(f'<line class="grid" x1="{left:.1f}" y1="{y:.1f}" x2="{RIGHT}" y2="{y:.1f}" stroke="{GRID}"/>')
        add(
            f'<text class="tick-label" x="{left - 5:.1f}" y="{y:.1f}" dy="0.32em" text-anchor="end" '
            f'fill="{INK}">{e(label)}</text>'
        )
    add(f'<line class="axis" x1="{left:.1f}" y1="{TOP}" x2="{left:.1f}" y2="{BOTTOM}" stroke="{MUTED}"/>')
    add(f'<line class="axis" x1="{left:.1f}" y1="{BOTTOM}" x2="{RIGHT}" y2="{BOTTOM}" stroke="{MUTED}"/>')
    middle = (TOP + BOTTOM) / 2
    add(
        f'<text class="axis-title" x="{8 + FONT - 2}" y="{middle:.1f}" text-anchor="middle" fill="{MUTED}" '
        f'transform="rotate(-90 {8 + FONT - 2} {middle:.1f})">{e(_AXIS_TITLES.get(unit, unit))}</text>'
    )

    # The nights: their dots and medians, then their labels, newest first, each where it clears the one to its
    # right (tonight's first): when the slots are narrower than the labels, only some nights are labelled.
    for i, (label, values) in enumerate(shown_nights):
        parts.extend(_runs(values, left + slot * (i + 0.5), slot, y_of, unit, label, "night", NIGHT_DOT))
    tonight_centre = tonight_left + tonight_width / 2
    free = tonight_centre - _width("tonight", FONT) / 2 - 6
    dates = [_short(label) for label, _ in shown_nights]
    same_day = len(set(dates)) < len(dates)  # several nights on one date: tell them apart by the time
    for i in reversed(range(len(shown_nights))):
        label = shown_nights[i][0]
        short, centre = _short(label, with_time=same_day), left + slot * (i + 0.5)
        half = _width(short, FONT) / 2
        if centre + half <= free and centre - half >= left - 12:
            add(
                f'<text class="x-label" x="{centre:.1f}" y="{BOTTOM + 13}" text-anchor="middle" fill="{INK}">'
                f"<title>{e(label)}</title>{e(short)}</text>"
            )
            free = centre - half - 8

    # The bound: a dashed line across the plot, its value written on it (below it when it is near the top).
    if shown_bound is not None:
        y = y_of(shown_bound)
        add(
            f'<line class="bound" x1="{left:.1f}" y1="{y:.1f}" x2="{RIGHT}" y2="{y:.1f}" stroke="{BOUND_INK}" '
            f'stroke-width="1.5" stroke-dasharray="6 3"/>'
        )
        label_y = y + FONT + 2 if y - 3 - FONT < TOP else y - 3
        add(
            f'<text class="bound-label" x="{left + 4:.1f}" y="{label_y:.1f}" fill="{BOUND_INK}" stroke="#ffffff" '
            f'stroke-width="3" paint-order="stroke" font-weight="bold">bound {e(_value(shown_bound, unit))}</text>'
        )

    # Tonight: its dots over everything else, then its label.
    colour = RED if regressed else TONIGHT_DOT
    parts.extend(_runs(shown_tonight, tonight_centre, tonight_width, y_of, unit, "tonight", "tonight", colour))
    add(
        f'<text class="tonight-label" x="{tonight_centre:.1f}" y="{BOTTOM + 13}" text-anchor="middle" '
        f'font-weight="bold" fill="{RED if regressed else INK}">tonight</text>'
    )

    # Above the plot: the figure's name, and when it regressed tonight's worst value against the bound.
    note = ""
    if regressed:
        worst = (max if higher_is_worse else min)(shown_tonight) if shown_tonight else None
        if of_median and shown_tonight and shown_bound is not None:
            middle = statistics.median(shown_tonight)
            note = f"median {_value(middle, unit)} {'>' if higher_is_worse else '<'} bound {_value(shown_bound, unit)}"
        elif worst is not None and shown_bound is not None:
            note = f"{_value(worst, unit)} {'>' if higher_is_worse else '<'} bound {_value(shown_bound, unit)}"
        elif worst is not None:
            note = f"{_value(worst, unit)}: regression"
        else:
            note = "regression"
    room = RIGHT - left - (_width(note, TITLE_FONT) + 12 if note else 0)
    add(
        f'<text class="figure" x="{left:.1f}" y="{TOP - 9}" font-size="{TITLE_FONT}" font-weight="bold" '
        f'fill="{INK}">{e(_fit(figure, room, TITLE_FONT))}</text>'
    )
    if note:
        add(
            f'<text class="annotation" x="{RIGHT}" y="{TOP - 9}" text-anchor="end" font-size="{TITLE_FONT}" '
            f'font-weight="bold" fill="{RED}">{e(note)}</text>'
        )

    parts.extend(_legend(left, shown_band, unit))
    add("</svg>")
    return "".join(parts)


def _runs(
    values: Sequence[float],
    centre: float,
    width: float,
    y_of: Callable[[float], float],
    unit: str,
    night: str,
    kind: str,
    colour: str,
) -> list[str]:
    """One slot's runs: a dot per value, spread across the slot's middle, and a tick at their median."""
    if not values:
        return []
    e = html.escape
    radius = 3.0 if width >= 14 else 2.0
    spread = min(width * 0.5, (len(values) - 1) * 7.0)
    step = spread / (len(values) - 1) if len(values) > 1 else 0.0
    half = min(width * 0.8, spread + 14) / 2
    y = y_of(statistics.median(values))
    out = [
        f'<line class="median {kind}" x1="{centre - half:.1f}" y1="{y:.1f}" x2="{centre + half:.1f}" y2="{y:.1f}" '
        f'stroke="{colour}" stroke-width="2" stroke-opacity="0.6"><title>{e(night)} median '
        f"{e(_exact(statistics.median(values), unit))}</title></line>"
    ]
    for j, value in enumerate(values):
        x = centre - spread / 2 + j * step
        out.append(
            f'<circle class="run {kind}" cx="{x:.1f}" cy="{y_of(value):.1f}" r="{radius}" fill="{colour}" '
            f'fill-opacity="0.85"><title>{e(night)}: {e(_exact(value, unit))}</title></circle>'
        )
    return out


def _legend(left: float, band: tuple[float, float] | None, unit: str) -> list[str]:
    """The key under the plot: a run, a night's median, and the baseline band with its range."""
    y = HEIGHT - 10
    x = left
    out = [f'<g class="legend" fill="{INK}">']
    out.append(f'<circle cx="{x + 3:.1f}" cy="{y - 3.5:.1f}" r="3" fill="{NIGHT_DOT}"/>')
    out.append(f'<text x="{x + 10:.1f}" y="{y}">a run</text>')
    x += 10 + _width("a run", FONT) + 14
    out.append(
        f'<line x1="{x:.1f}" y1="{y - 3.5:.1f}" x2="{x + 14:.1f}" y2="{y - 3.5:.1f}" stroke="{NIGHT_DOT}" '
        f'stroke-width="2" stroke-opacity="0.6"/>'
    )
    out.append(f'<text x="{x + 18:.1f}" y="{y}">median</text>')
    x += 18 + _width("median", FONT) + 14
    if band is not None:
        out.append(f'<rect x="{x:.1f}" y="{y - 8:.1f}" width="14" height="9" fill="{BAND_FILL}"/>')
        text = f"baseline band {_value(band[0], unit)} to {_value(band[1], unit)}"
        out.append(f'<text class="band-label" x="{x + 18:.1f}" y="{y}">{html.escape(text)}</text>')
    out.append("</g>")
    return out


def _ticks(values: Sequence[float], *, percent: bool, count: bool) -> list[float]:
    """3 to 5 evenly spaced round ticks spanning ``values``: from 0 unless ``percent``, within 0..100 if so."""
    if percent:
        low, high = (min(values), max(values)) if values else (99.0, 100.0)
        pad = (high - low) * 0.1 if high > low else 0.5
        low, high = low - pad, high + pad
        if max(values, default=100.0) <= 100.0:
            high = min(high, 100.0)
        if min(values, default=0.0) >= 0.0:
            low = max(low, 0.0)
    else:
        low, high = min([0.0, *values]), max([0.0, *values])
        if high == low:
            high = low + (2.0 if count else 1.0)
    span = high - low
    for exponent in range(math.floor(math.log10(span)) - 2, math.floor(math.log10(span)) + 2):
        for mantissa in (1.0, 2.0, 2.5, 5.0):
            step = mantissa * 10.0**exponent
            if count and step < 1:
                continue
            first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
            if last - first + 1 <= 5:
                return [k * step for k in range(first, max(last, first + 2) + 1)]
    raise AssertionError("unreachable: a step of 10 ** (log10(span) + 1) gives at most 3 ticks")


def _decimals(step: float) -> int:
    """The fewest decimals that write ``step`` (and so every tick, its multiples) exactly."""
    for decimals in range(7):
        if abs(round(step, decimals) - step) < step * 1e-6:
            return decimals
    return 6


def _with_unit(number: str, unit: str) -> str:
    return f"{number} {unit}" if unit else number


def _value(value: float, unit: str) -> str:
    """A value as the plot writes it: 2 decimals for percent, else 3 significant-ish digits (counts whole)."""
    if unit == "%":
        return _with_unit(f"{value:.2f}", unit)
    if unit == "" and value == int(value):
        return str(int(value))
    decimals = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    return _with_unit(f"{value:.{decimals}f}", unit)


def _exact(value: float, unit: str) -> str:
    """A value as a tooltip gives it: every significant digit."""
    return _with_unit(f"{value:.10g}", unit)


def _short(label: str, with_time: bool = False) -> str:
    """A night's label for its slot: ``12-04`` for a timestamp such as ``20261204T0300Z`` (``04 03:00`` when
    several nights share a date), else its first 8 chars."""
    stamp = _STAMP.match(label)
    if stamp and with_time and stamp.group(3):
        return f"{stamp.group(2)} {stamp.group(3)}:{stamp.group(4) or '00'}"
    if stamp:
        return f"{stamp.group(1)}-{stamp.group(2)}"
    return label[:8]


def _width(text: str, size: float) -> float:
    return len(text) * size * CHAR


def _fit(text: str, room: float, size: float) -> str:
    """``text``, cut with an ellipsis when it is wider than ``room``."""
    if _width(text, size) <= room:
        return text
    keep = max(1, int(room / (size * CHAR)) - 1)
    return text[:keep] + "\u2026"
