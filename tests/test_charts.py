"""The SVG chart renderer alone (no Django): shapes, gaps, one point, huge values, escaping, and
markup a strict CSP allows (no script, no style attribute). Each SVG is parsed as XML."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest

from gonext_plugins.charts import Markup, Scale, byte_size, line_chart, number, sparkline

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg" and root.get("role") == "img"
    assert "<script" not in svg and "style=" not in svg and "javascript:" not in svg
    labelled = root.get("aria-labelledby", "").split()
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    assert labelled and set(labelled) <= ids  # the title and desc it names exist
    return root


def polylines(root: ET.Element) -> list[list[tuple[float, float]]]:
    return [[tuple(map(float, pair.split(","))) for pair in line.get("points", "").split()]  # type: ignore[misc]
            for line in root.iter(f"{SVG}polyline")]


def texts(root: ET.Element) -> dict[str, str]:
    return {(el.get("class") or ""): "".join(el.itertext()) for el in root.iter(f"{SVG}text")}


def test_a_line_rises_with_its_values_and_says_range_and_latest() -> None:
    root = parse(line_chart([1, 2, 4], "p50 time", window="last hour", fmt=lambda v: number(v, "ms")))
    [line] = polylines(root)
    assert [x for x, _ in line] == sorted(x for x, _ in line) and len(line) == 3
    ys = [y for _, y in line]
    assert ys[0] > ys[1] > ys[2]  # SVG's y grows downwards: a larger value is higher up
    labels = texts(root)
    assert labels["gn-chart-latest"] == "4 ms"
    assert labels["gn-chart-range"] == "0 ms to 4 ms"
    assert labels["gn-chart-window"] == "last hour"
    assert "latest 4 ms" in "".join(root.find(f"{SVG}desc").itertext())  # type: ignore[union-attr]


def test_an_empty_series_says_no_data_and_draws_nothing() -> None:
    for values in ([], [None, None], [math.nan]):
        root = parse(line_chart(values, "calls", window="last day"))
        assert not polylines(root) and not list(root.iter(f"{SVG}rect"))
        assert texts(root)["gn-chart-empty"] == "no data"
        assert texts(root)["gn-chart-latest"] == "—"
    root = parse(sparkline([], "calls"))
    assert "no data" in "".join(root.find(f"{SVG}desc").itertext())  # type: ignore[union-attr]


def test_one_point_is_a_dot_and_gaps_break_the_line() -> None:
    root = parse(line_chart([None, 3, None], "memory", window="w"))
    assert not polylines(root) and len(list(root.iter(f"{SVG}circle"))) == 1
    root = parse(sparkline([1, 2, None, math.inf, 5, 6, float("nan"), 7], "calls"))
    runs = polylines(root)
    assert [len(run) for run in runs] == [2, 2]  # (1, 2) and (5, 6); 7 stands alone as a dot
    assert len(list(root.iter(f"{SVG}circle"))) == 1


def test_bars_skip_zero_and_gaps_and_stay_inside_the_chart() -> None:
    root = parse(line_chart([0, 5, None, 10], "calls", window="w", bars=True, width=200, height=80))
    bars = list(root.iter(f"{SVG}rect"))
    assert len(bars) == 2
    heights = [float(bar.get("height", 0)) for bar in bars]
    assert heights[1] == pytest.approx(2 * heights[0])
    for bar in bars:
        assert 0 <= float(bar.get("y", -1)) and float(bar.get("y", 0)) + float(bar.get("height", 0)) <= 80
    # a count is headed by its window's total: the last step (the minute under way) may still be 0
    root = parse(line_chart([3, 12, 0], "calls", window="w", bars=True))
    assert texts(root)["gn-chart-total"] == "15 total" and "gn-chart-latest" not in texts(root)
    assert "total 15." in "".join(root.find(f"{SVG}desc").itertext())  # type: ignore[union-attr]
    assert "latest" not in "".join(root.find(f"{SVG}desc").itertext())  # type: ignore[union-attr]
    assert texts(parse(line_chart([None, None], "calls", window="w", bars=True)))["gn-chart-latest"] == "—"
    spark = parse(sparkline([3, 0], "calls", counts=True))
    assert "total 3." in "".join(spark.find(f"{SVG}desc").itertext())  # type: ignore[union-attr]


def test_huge_values_scale_and_print_short() -> None:
    values = [1e18, 3e18, 2e18]
    root = parse(line_chart(values, "fuel", window="w"))
    for _, y in polylines(root)[0]:
        assert 0 <= y <= 72
    assert texts(root)["gn-chart-latest"] == "2.00e+18"
    assert [number(v) for v in (12, 12_345, 4_500_000, 7.5e9, 0.4213, 123.4)] == [
        "12", "12.3k", "4.5M", "7.5G", "0.421", "123"]
    assert byte_size(65536) == "64.0 KiB" and byte_size(3 << 20) == "3.0 MiB" and byte_size(None) == "—"


def test_a_flat_series_has_a_range_and_no_division_by_zero() -> None:
    assert Scale.of([0.0, 0.0]) == Scale(0.0, 1.0)
    assert Scale.of([5.0, 5.0]) == Scale(0.0, 5.0)
    assert Scale.of([-2.0, 1.0]) == Scale(-2.0, 1.0)
    parse(sparkline([0, 0, 0], "faults"))


def test_labels_are_escaped() -> None:
    evil = '</title><script>alert(1)</script><text x="0">"&'
    svg = line_chart([1, 2], evil, window=evil, fmt=lambda v: evil)
    root = parse(svg)
    assert root.find(f"{SVG}title").text == evil  # type: ignore[union-attr]
    assert texts(root)["gn-chart-window"] == evil
    assert isinstance(svg, Markup) and svg.__html__() is svg


def test_every_chart_has_its_own_ids() -> None:
    first, second = sparkline([1], "a"), sparkline([1], "a")
    ids = re.findall(r'id="([^"]+)"', first + second)
    assert len(ids) == len(set(ids)) == 4
