"""The trend plot's SVG, parsed: its axis, its scale, its band and bound, and how tonight is marked."""

from __future__ import annotations

import itertools
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence

import pytest

from chaoskit.trends import trend_svg

SVG = "{http://www.w3.org/2000/svg}"
RED = "#c53030"
NIGHTS = [(f"202612{day:02}T0300Z", [2.1 + day / 10, 2.3, 2.2]) for day in range(1, 7)]


def plot(
    figure: str = "recovery_s",
    unit: str = "s",
    nights: Sequence[tuple[str, Sequence[float]]] = NIGHTS,
    tonight: Sequence[float] = (3.9, 4.2, 4.05),
    band: tuple[float, float] | None = (1.9, 2.6),
    bound: float | None = 3.1,
    regressed: bool = True,
    higher_is_worse: bool = True,
) -> ET.Element:
    svg = trend_svg(figure, unit, nights, tonight, band, bound, regressed, higher_is_worse)
    assert isinstance(svg, str) and svg.startswith("<svg")
    return ET.fromstring(svg)


def of_class(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [el for el in root.iter(SVG + tag) if cls in el.get("class", "").split()]


def text(el: ET.Element) -> str:
    """An element's own text, its <title> child (a tooltip) left out."""
    return "".join(t for t in [el.text, *(child.tail for child in el)] if t)


def ticks(root: ET.Element) -> list[tuple[float, float]]:
    """The y axis's ticks as (value written on it, y it is drawn at), bottom first."""
    out = [(float(text(t).split()[0]), float(t.get("y", "nan"))) for t in of_class(root, "text", "tick-label")]
    return sorted(out, key=lambda tick: tick[0])


def y_of(root: ET.Element, value: float) -> float:
    """Where the axis puts ``value``, read off its first and last tick."""
    (low, y_low), *_, (high, y_high) = ticks(root)
    return y_low + (value - low) / (high - low) * (y_high - y_low)


def dots(root: ET.Element, kind: str) -> list[ET.Element]:
    return of_class(root, "circle", kind)


def test_an_svg_of_about_420_by_180_with_a_view_box_and_readable_text():
    root = plot()
    assert root.tag == SVG + "svg"
    assert root.get("viewBox") == "0 0 420 180"
    assert (float(root.get("width", "0")), float(root.get("height", "0"))) == (420, 180)
    assert float(root.get("font-size", "0")) >= 10
    for el in root.iter(SVG + "text"):
        assert float(el.get("font-size", root.get("font-size", "0"))) >= 10


@pytest.mark.parametrize(
    ("unit", "tonight", "suffix", "title"),
    [("s", [4.2], " s", "(s)"), ("ms", [540.0], " ms", "(ms)"), ("%", [0.993], " %", "(%)")],
)
def test_the_tick_labels_are_in_the_figures_unit(unit: str, tonight: list[float], suffix: str, title: str):
    nights = [(n, [0.999, 0.998]) for n, _ in NIGHTS] if unit == "%" else [(n, [40.0]) for n, _ in NIGHTS]
    root = plot(unit=unit, nights=nights, tonight=tonight, band=None, bound=None)
    labels = [text(t) for t in of_class(root, "text", "tick-label")]
    assert 3 <= len(labels) <= 5
    assert all(label.endswith(suffix) for label in labels), labels
    (axis_title,) = of_class(root, "text", "axis-title")
    assert title in text(axis_title)


def test_the_ticks_are_evenly_spaced_in_value_and_in_y():
    values = [v for v, _ in ticks(plot())]
    ys = [y for _, y in ticks(plot())]
    steps, gaps = {round(b - a, 9) for a, b in itertools.pairwise(values)}, [b - a for a, b in itertools.pairwise(ys)]
    assert len(steps) == 1
    assert max(gaps) - min(gaps) < 0.2


@pytest.mark.parametrize(("unit", "before", "after"), [("s", 0.3, 3.9), ("ms", 40.0, 520.0), ("", 1.0, 13.0)])
def test_a_13x_jump_is_drawn_13x_as_far_from_zero(unit: str, before: float, after: float):
    root = plot(unit=unit, nights=[("20261204T0300Z", [before])], tonight=[after], band=None, bound=None)
    zero = [y for value, y in ticks(root) if value == 0]
    assert zero, "the axis starts at 0 and says so"
    ((night,), (tonight,)) = dots(root, "night"), dots(root, "tonight")
    height_before = zero[0] - float(night.get("cy", "nan"))
    height_after = zero[0] - float(tonight.get("cy", "nan"))
    assert height_before > 0
    assert height_after / height_before == pytest.approx(13, rel=0.05)


@pytest.mark.parametrize("unit", ["s", "ms", ""])
def test_times_and_counts_start_at_zero_even_when_every_value_is_far_from_it(unit: str):
    root = plot(unit=unit, nights=[("20261204T0300Z", [100.0, 101.0])], tonight=[104.0], band=(99.0, 102.0), bound=None)
    assert ticks(root)[0][0] == 0
    (tonight,) = dots(root, "tonight")
    assert float(tonight.get("cy", "nan")) == pytest.approx(y_of(root, 104.0), abs=0.2)


def test_the_y_range_includes_the_band_and_the_bound_even_above_every_value():
    root = plot(nights=[("20261204T0300Z", [1.0])], tonight=[1.1], band=(0.8, 5.0), bound=7.5, regressed=False)
    assert ticks(root)[0][0] == 0
    assert ticks(root)[-1][0] >= 7.5


def test_availability_is_shown_in_percent_over_a_range_not_forced_to_zero():
    nights = [(n, [0.999, 0.9985, 0.9992]) for n, _ in NIGHTS]
    root = plot("whole.availability", "%", nights, [0.9931, 0.995], (0.998, 0.9995), 0.996, True, False)
    (low, _), *_, (high, _) = ticks(root)
    assert 90 < low <= 99.31 and 99.95 <= high <= 100
    top, bottom = sorted([ticks(root)[0][1], ticks(root)[-1][1]])
    for dot in dots(root, "run"):
        assert top - 0.1 <= float(dot.get("cy", "nan")) <= bottom + 0.1
    (bound,) = of_class(root, "line", "bound")
    assert float(bound.get("y1", "nan")) == pytest.approx(y_of(root, 99.6), abs=0.2)
    (note,) = of_class(root, "text", "annotation")
    assert text(note) == "99.31 % < bound 99.60 %"


def test_the_band_is_a_rectangle_from_its_low_to_its_high_across_the_earlier_nights():
    root = plot()
    (band,) = of_class(root, "rect", "band")
    top, height = float(band.get("y", "nan")), float(band.get("height", "nan"))
    assert top == pytest.approx(y_of(root, 2.6), abs=0.2)
    assert top + height == pytest.approx(y_of(root, 1.9), abs=0.2)
    (column,) = of_class(root, "rect", "tonight-column")
    right = float(band.get("x", "nan")) + float(band.get("width", "nan"))
    assert right == pytest.approx(float(column.get("x", "nan")), abs=0.2), "the band stops where tonight begins"
    (legend,) = of_class(root, "text", "band-label")
    assert text(legend) == "baseline band 1.90 s to 2.60 s"


def test_no_band_no_rectangle_and_no_legend_for_it():
    root = plot(band=None)
    assert not of_class(root, "rect", "band")
    assert not of_class(root, "text", "band-label")


def test_the_bound_is_a_dashed_line_labelled_with_its_value():
    root = plot()
    (line,) = of_class(root, "line", "bound")
    assert line.get("stroke-dasharray")
    assert line.get("y1") == line.get("y2")
    assert float(line.get("y1", "nan")) == pytest.approx(y_of(root, 3.1), abs=0.2)
    (label,) = of_class(root, "text", "bound-label")
    assert text(label) == "bound 3.10 s"
    assert not of_class(plot(bound=None), "line", "bound")
    assert not of_class(plot(bound=None), "text", "bound-label")


def test_tonights_dots_are_red_only_when_it_regressed():
    regressed, passed = plot(regressed=True), plot(regressed=False, tonight=[2.2, 2.4])
    assert {d.get("fill") for d in dots(regressed, "tonight")} == {RED}
    assert RED not in {d.get("fill") for d in dots(passed, "tonight")}
    assert RED not in {d.get("fill") for d in dots(regressed, "night")}


def test_a_regression_writes_tonights_worst_value_against_the_bound():
    (note,) = of_class(plot(), "text", "annotation")
    assert "4.20 s" in text(note) and "bound 3.10 s" in text(note)
    assert text(note) == "4.20 s > bound 3.10 s"
    assert not of_class(plot(regressed=False, tonight=[2.2]), "text", "annotation")


def test_one_dot_per_value_each_with_its_exact_value_as_a_tooltip():
    nights = [("20261204T0300Z", [1.0, 1.25, 1.5]), ("20261205T0300Z", [1.125]), ("20261206T0300Z", [])]
    root = plot(nights=nights, tonight=[4.2, 3.75])
    assert len(dots(root, "night")) == 4
    assert len(dots(root, "tonight")) == 2
    tips = [d.findtext(SVG + "title") for d in dots(root, "run")]
    assert tips == [
        "20261204T0300Z: 1 s",
        "20261204T0300Z: 1.25 s",
        "20261204T0300Z: 1.5 s",
        "20261205T0300Z: 1.125 s",
        "tonight: 4.2 s",
        "tonight: 3.75 s",
    ]


def test_each_nights_median_is_a_short_horizontal_tick_in_its_slot():
    root = plot(nights=[("20261204T0300Z", [1.0, 3.0, 2.0])], tonight=[4.0], bound=None, regressed=False)
    medians = of_class(root, "line", "median")
    night = [m for m in medians if "night" in m.get("class", "").split()]
    assert len(night) == 1
    assert night[0].get("y1") == night[0].get("y2")
    assert float(night[0].get("y1", "nan")) == pytest.approx(y_of(root, 2.0), abs=0.2)
    xs = [float(d.get("cx", "nan")) for d in dots(root, "night")]
    assert float(night[0].get("x1", "nan")) <= min(xs) and max(xs) <= float(night[0].get("x2", "nan"))


def test_tonight_has_its_own_labelled_shaded_slot_after_the_nights():
    root = plot()
    (label,) = of_class(root, "text", "tonight-label")
    assert text(label) == "tonight"
    assert label.get("font-weight") == "bold"
    (column,) = of_class(root, "rect", "tonight-column")
    left = float(column.get("x", "nan"))
    assert all(float(d.get("cx", "nan")) > left for d in dots(root, "tonight"))
    assert all(float(d.get("cx", "nan")) < left for d in dots(root, "night"))


def test_night_labels_are_shortened_to_month_and_day_or_8_characters():
    nights = [("20261204T0300Z", [1.0]), ("2026-12-05T03:00:00Z", [1.0]), ("a-long-night-name", [1.0])]
    labels = of_class(plot(nights=nights), "text", "x-label")
    assert sorted(text(label) for label in labels) == ["12-04", "12-05", "a-long-n"]
    assert sorted(label.findtext(SVG + "title") or "" for label in labels) == sorted(n for n, _ in nights)


def test_the_night_labels_do_not_overlap_when_there_are_many_nights():
    nights = [(f"night-{i:02}-of-thirty", [1.0, 1.2]) for i in range(30)]
    root = plot(nights=nights, tonight=[1.1], regressed=False)
    xs = sorted(float(label.get("x", "nan")) for label in of_class(root, "text", "x-label"))
    assert 2 <= len(xs) < 30
    assert min(b - a for a, b in itertools.pairwise(xs)) > 8 * 6  # 8 characters of 10 px type at the least
    (tonight,) = of_class(root, "text", "tonight-label")
    assert float(tonight.get("x", "nan")) - xs[-1] > (8 + 7) * 6 / 2
    assert len(dots(root, "night")) == 60


@pytest.mark.parametrize(
    ("unit", "nights", "tonight", "band", "bound"),
    [
        ("s", [], [4.2], (1.0, 2.0), 3.0),  # no earlier night
        ("s", [], [], None, None),  # nothing at all
        ("s", [("20261204T0300Z", [2.0])], [2.0], None, None),  # one value a night, all equal
        ("", [("20261204T0300Z", [0.0, 0.0])], [0.0], (0.0, 0.0), 0.0),  # zeros (a count)
        ("ms", [("20261204T0300Z", [0.0])], [0.0], None, None),
        ("%", [("20261204T0300Z", [1.0, 1.0])], [1.0], (1.0, 1.0), 1.0),  # availability, all 100 %
        ("%", [], [0.5], None, None),
    ],
)
def test_edge_cases_still_draw_a_sound_plot(
    unit: str,
    nights: list[tuple[str, list[float]]],
    tonight: list[float],
    band: tuple[float, float] | None,
    bound: float | None,
):
    for regressed in (False, True):
        root = plot("fig", unit, nights, tonight, band, bound, regressed)
        assert 3 <= len(ticks(root)) <= 5
        assert len(dots(root, "run")) == sum(len(v) for _, v in nights) + len(tonight)
        assert of_class(root, "text", "tonight-label")
        assert bool(of_class(root, "rect", "band")) == (band is not None)
        assert bool(of_class(root, "line", "bound")) == (bound is not None)
        for el in root.iter():
            for attribute in ("x", "y", "cx", "cy", "x1", "x2", "y1", "y2", "width", "height"):
                if el.get(attribute) is not None:
                    assert math.isfinite(float(el.get(attribute, "nan"))), (el.tag, attribute)
        (_, y_low), *_, (_, y_high) = ticks(root)
        for dot in dots(root, "run"):
            assert y_high - 0.1 <= float(dot.get("cy", "nan")) <= y_low + 0.1


def test_text_is_escaped_and_nothing_external_or_scripted():
    svg = trend_svg("<b>&fig\"'", "s", [("<night & 'day'>", [1.0])], [2.0], None, 1.5, True)
    root = ET.fromstring(svg)
    (title,) = of_class(root, "text", "figure")
    assert text(title) == "<b>&fig\"'"
    (label,) = of_class(root, "text", "x-label")
    assert label.findtext(SVG + "title") == "<night & 'day'>"
    assert "<script" not in svg.lower() and "href" not in svg and "url(" not in svg
    assert svg.count("http") == 1  # the SVG namespace alone


def test_nights_on_one_date_are_told_apart_by_their_time():
    svg = trend_svg(
        "recovery_s", "s", [("20261206T140839Z", [1.0]), ("20261206T141141Z", [1.1])], [1.2], None, None, False
    )
    labels = [text(label) for label in of_class(ET.fromstring(svg), "text", "x-label")]
    assert labels == ["06 14:11", "06 14:08"], labels  # newest first, as they are placed
