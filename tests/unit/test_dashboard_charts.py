"""The Dashboard's SVG charts (``include/etlkit/control/charts.py``) and how query rows become panels."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date
from decimal import Decimal

import pytest

from include.etlkit.control.charts import BAR_AREA, LABEL_WIDTH, Panel, bar_chart, draw, line_chart, number
from include.etlkit.control.dashboard import CHARTS, ChartSpec, masked, panels

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))  # well-formed XML, or this raises


def points(svg: ET.Element) -> list[ET.Element]:
    return [e for e in svg.iter() if e.get("class") == "point"]


def test_bars_are_as_long_as_their_values_the_largest_filling_the_area():
    svg = parse(bar_chart(Panel("GBP", [("a", 100), ("b", 50), ("c", Decimal("25.5"))])))
    rects = points(svg)
    assert [r.get("data-label") for r in rects] == ["a", "b", "c"]
    assert [float(r.get("width")) for r in rects] == [BAR_AREA, BAR_AREA / 2, round(BAR_AREA * 0.255, 1)]
    assert {float(r.get("x")) for r in rects} == {LABEL_WIDTH}
    assert rects[2].get("data-value") == "25.5"
    assert svg.find(f"{SVG}title").text == "GBP"


def test_a_line_chart_has_a_point_per_value_the_highest_at_the_top():
    panel = Panel("EUR", [("2024-01-01", 10), ("2024-02-01", 30), ("2024-03-01", 20)])
    svg = parse(line_chart(panel))
    circles = points(svg)
    assert len(circles) == 3
    ys = [float(c.get("cy")) for c in circles]
    assert ys[1] < ys[2] < ys[0]  # SVG's y grows downwards
    xs = [float(c.get("cx")) for c in circles]
    assert xs == sorted(xs)
    assert svg.find(f"{SVG}polyline") is not None


def test_a_single_point_line_chart_and_all_zero_bars_draw_without_dividing_by_zero():
    assert len(points(parse(line_chart(Panel("x", [("only", 5)]))))) == 1
    bars = points(parse(bar_chart(Panel("x", [("a", 0), ("b", -3)]))))
    assert [float(b.get("width")) for b in bars] == [0, 0]


def test_every_text_is_escaped():
    evil = '<script>alert(1)</script>" onload="x'
    for markup in (bar_chart(Panel(evil, [(evil, 1)])), line_chart(Panel(evil, [(evil, 1), ("b", 2)]))):
        assert "<script>" not in markup
        svg = parse(markup)
        assert points(svg)[0].get("data-label") == evil  # the text survives, as text
        assert all(e.get("onload") is None for e in svg.iter())


def test_draw_picks_the_kind_and_refuses_an_unknown_one():
    assert 'class="chart bars"' in draw("bars", Panel("p", [("a", 1)]))
    assert 'class="chart line"' in draw("line", Panel("p", [("a", 1)]))
    with pytest.raises(ValueError, match="unknown chart kind"):
        draw("pie", Panel("p", [("a", 1)]))


@pytest.mark.parametrize(
    ("value", "text"), [(1_234_567, "1.23M"), (5321.5, "5.32k"), (12.5, "12.5"), (7, "7"), (None, "")]
)
def test_number(value, text):
    assert number(value) == text


def test_rows_split_into_panels_in_query_order_one_point_per_row_labelled_by_its_columns():
    spec = ChartSpec(
        "s", "S", "q.sql", "bars", label=("name", "id"), value="amount", panel=("currency", "kind")
    )
    columns = ["name", "id", "kind", "currency", "amount"]
    rows = [
        ("Granite", 7, "SALES", "GBP", Decimal("10")),
        ("Concrete", 2, "SALES", "GBP", Decimal("5")),
        ("Granite", 9, "SALES", "GBP", Decimal("1")),  # another design of the same name
        ("Granite", 7, "SALES", "EUR", None),
    ]
    assert panels(spec, columns, rows) == [
        Panel("GBP · SALES", [("Granite · 7", 10.0), ("Concrete · 2", 5.0), ("Granite · 9", 1.0)]),
        Panel("EUR · SALES", [("Granite · 7", 0.0)]),
    ]


def test_panels_cap_their_points_label_dates_by_day_and_name_a_missing_column():
    spec = ChartSpec("s", "S", "q.sql", "line", label=("month",), value="v", unit="GBP", max_points=2)
    rows = [(date(2024, 1, 1), 1), (date(2024, 2, 1), 2), (date(2024, 3, 1), 3)]
    assert panels(spec, ["month", "v"], rows) == [Panel("GBP", [("2024-01-01", 1.0), ("2024-02-01", 2.0)])]
    with pytest.raises(ValueError, match="no column v"):
        panels(spec, ["month"], [])


def test_every_chart_has_its_query_file_and_a_known_kind():
    from include.etlkit.control.dashboard import DASHBOARD_SQL

    assert len(CHARTS) == 5
    for spec in CHARTS:
        assert (DASHBOARD_SQL / spec.query).is_file(), spec.query
        assert spec.kind in ("bars", "line")


def test_errors_are_masked_and_cut_to_their_first_line():
    shown = masked("connect to postgres://etl:s3cr3t@db/warehouse failed\nTraceback ...")
    assert "s3cr3t" not in shown and "Traceback" not in shown
    assert shown.startswith("connect to postgres://etl:")
    assert masked(None) == ""
