"""The benchmark harness (arenagrad.benchmark): a smoke run on tiny sizes and its table.

No timing is asserted: only that every engine/workload cell is filled, the figures are
positive, the ratios are against the reference, and failures are reported, not raised.
"""

from __future__ import annotations

import json
import re

import pytest
from arenagrad import benchmark

pytest.importorskip("numpy")

WORKLOADS = "expr,demo16,backward,chain,memory,add"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("bench") / "figures.json"
    argv = ["--quick", "--engines", "arenagrad,reference", "--workloads", WORKLOADS]
    argv += ["--json", str(out)]
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert benchmark.main(argv) == 0
    return printed.getvalue(), json.loads(out.read_text())


def table_rows(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_table_has_one_row_per_workload_and_one_column_per_engine(quick_run):
    text, _ = quick_run
    rows = table_rows(text)
    header, rule, body = rows[0], rows[1], rows[2:]
    assert header == ["workload", "unit", "arenagrad", "arenagrad.reference"]
    assert all(set(cell) <= {"-"} for cell in rule)
    assert len(body) == len(WORKLOADS.split(","))
    assert [row[0].split(".")[0] for row in body[:5]] == ["1", "2", "4", "5", "6"]
    for row in body:
        assert len(row) == 4
        for cell in row[2:]:
            number = re.fullmatch(r"([\d,.]+(?:e[-+]?\d+)?)\*? \(×([\d,.e+-]+)\)", cell)
            assert number, cell
            assert float(number.group(1).replace(",", "")) > 0
        assert row[3].endswith("(×1.0)")  # the reference against itself


def test_machine_and_method_are_described(quick_run):
    text, figures = quick_run
    assert "cores" in text and "Python" in text and "garbage collector on" in text
    assert figures["machine"]["cores"] >= 1
    assert figures["sizes"]["graph_nodes"] == benchmark.QUICK.graph_nodes


def test_json_holds_every_repeat(quick_run):
    _, figures = quick_run
    results = figures["results"]
    assert set(results) == set(WORKLOADS.split(","))
    for workload, row in results.items():
        assert set(row) == {"arenagrad", "reference"}, workload
        for engine, result in row.items():
            assert "error" not in result, (workload, engine, result)
            assert result["values"] and all(v > 0 for v in result["values"])
    graph = results["backward"]["arenagrad"]
    assert graph["nodes"] >= benchmark.QUICK.graph_nodes - 5
    assert results["memory"]["arenagrad"] is not None


def test_both_engines_compute_micrograds_readme_numbers(quick_run):
    _, figures = quick_run
    for engine in ("arenagrad", "reference"):
        check = figures["results"]["expr"][engine]["check"]
        assert check["g"] == pytest.approx(24.7041, abs=1e-4)
        assert check["a.grad"] == pytest.approx(138.8338, abs=1e-4)


def test_wide_graph_counts_its_nodes():
    from arenagrad import reference

    root, nodes = benchmark.wide_graph(reference.Value, 1000)
    seen, stack = set(), [root]
    while stack:
        v = stack.pop()
        if id(v) not in seen:
            seen.add(id(v))
            stack.extend(v._prev)
    assert len(seen) == nodes  # the shared w and b leaves included


def test_a_failing_engine_is_reported_not_raised(monkeypatch):
    result = benchmark.child(
        {"engine": "no_such_engine_module", "workload": "expr", "sizes": benchmark.QUICK.__dict__}
    )
    assert result["error"] == "ModuleNotFoundError"
    workload = benchmark.find_workload("expr")
    assert benchmark.format_cell(result, workload, 1.0) == "fails (ModuleNotFoundError)"
    assert benchmark.format_cell({"error": "RecursionError"}, workload, None) == (
        "fails (RecursionError)"
    )
    assert benchmark.format_cell(None, workload, 1.0) == "—"


def test_cells_show_medians_and_ratios():
    workload = benchmark.find_workload("demo16")
    assert benchmark.format_cell({"values": [3.0, 1.0, 2.0]}, workload, 200.0) == "2.00 (×100)"
    assert benchmark.format_cell({"values": [50.0]}, workload, 100.0) == "50.0* (×2.0)"


def test_unknown_workload_is_a_usage_error(capsys):
    assert benchmark.main(["--workloads", "nope"]) == 2
    assert "unknown workload" in capsys.readouterr().err
