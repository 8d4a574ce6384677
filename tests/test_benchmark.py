"""The benchmark harness (bench/compare.py): a smoke run on tiny sizes and its table.

No timing is asserted: only that every engine/workload cell is filled, the figures are
positive, the ratios are against the reference, failures are reported, not raised, and bad
command lines stop before any work.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
if not (BENCH / "compare.py").is_file():
    pytest.skip("bench/ is not beside tests/ (a source checkout has it)", allow_module_level=True)
sys.path.insert(0, str(BENCH))
import compare as benchmark  # noqa: E402

WORKLOADS = "expr,demo16,backward,chain,memory,add"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("bench") / "figures.json"
    argv = ["--quick", "--engines", "arenagrad,reference", "--workloads", WORKLOADS]
    argv += ["--json", str(out)]
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


def usage_error(capsys, argv: list[str]) -> str:
    """Runs the harness on `argv`, which must fail at once: exit 2, one line on stderr."""
    with pytest.raises(SystemExit) as exit:
        benchmark.main(argv)
    assert exit.value.code == 2
    err = capsys.readouterr()
    assert err.out == ""  # no table: nothing ran
    lines = err.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench/compare.py: error:"), err.err
    return lines[0]


def test_unknown_names_are_usage_errors(capsys):
    assert "unknown workload 'nope'" in usage_error(capsys, ["--workloads", "expr,nope"])
    assert "unknown engine 'nope'" in usage_error(capsys, ["--engines", "nope"])
    assert "comma-separated" in usage_error(capsys, ["--engines", ","])
    line = usage_error(capsys, ["--engine", "no_such_module_anywhere"])
    assert "not importable" in line


@pytest.mark.parametrize(
    "argv",
    [["--bogus"], ["--budget", "x"], ["--budget", "0"], ["--budget", "inf"], ["--seed", "-1"]],
)
def test_bad_values_are_usage_errors(capsys, argv):
    usage_error(capsys, argv)


@pytest.mark.parametrize(
    "option, path, why",
    [
        ("--json", "missing-folder/figures.json", "does not exist"),
        ("--json", ".", "is a folder"),
        ("--plot", "chart.nope", "format"),
    ],
)
def test_output_paths_are_checked_before_the_run(capsys, tmp_path, monkeypatch, option, path, why):
    if option == "--plot":
        pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    assert why in usage_error(capsys, ["--quick", "--workloads", "expr", option, path])
