"""One table of every measured figure: its target, the peer's figure from the same run, the ratio, pass or fail.

Reads what each benchmark wrote to benchmarks/results/ (through common.write); a result that is missing reads
"not measured", never an error. Writes the table to benchmarks/results/summary.json; `--markdown` prints it
as the README's table. `make bench` runs it last.
"""

from __future__ import annotations

import argparse
import json
import operator
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

RESULTS = Path(__file__).resolve().parent / "results"
AT_MOST, AT_LEAST, EQUALS = "<=", ">=", "=="
CHECKS: dict[str, Callable[[Any, Any], bool]] = {AT_MOST: operator.le, AT_LEAST: operator.ge, EQUALS: operator.eq}


@dataclass(frozen=True)
class Figure:
    """One figure: where it is in which result, its unit and target, and the peer measured beside it.

    The target applies to the value, or to the ratio when `on_ratio` (a lead over a peer). The ratio is read
    from `ratio` when the benchmark computed it, else value / peer."""

    area: str
    name: str
    source: str
    value: str
    unit: str = ""
    target: float | bool | None = None
    check: str = AT_MOST
    peer_name: str = ""
    peer: str = ""
    ratio: str = ""
    on_ratio: bool = False


FIGURES = [
    # issue 19: speed a user feels
    Figure("tracking", "command -> first step starts, tracked", "tracking_latency", "tracked.first_step_s", "s", 0.5,
           peer_name="untracked", peer="untracked.first_step_s"),
    Figure("tracking", "command -> first step, brand-new store", "tracking_latency",
           "tracked.first_step_s_new_store", "s", 0.5, peer_name="untracked", peer="untracked.first_step_s_new_store"),
    Figure("tracking", "cached re-run, 20 steps, tracked", "tracking_latency", "tracked.cached_rerun_20_s", "s", 1.0,
           peer_name="untracked", peer="untracked.cached_rerun_20_s"),
    # the 5 % target is the example's (below): a 20-step pipeline of no-op steps has no first run to be 5 % of
    Figure("tracking", "cached re-run / first run, 20 no-op steps", "tracking_latency", "tracked.cached_fraction", ""),
    Figure("tracking", "example: cached re-run, tracked", "pipeline_speed", "rows_5000.cached_rerun_wall_s", "s", 1.0,
           peer_name="untracked", peer="rows_5000.cached_rerun_untracked_wall_s"),
    Figure("tracking", "example: cached re-run / first run", "pipeline_speed", "rows_5000.cached_rerun_fraction", "",
           0.05),
    Figure("runner", "per-step overhead, tracked (20 steps)", "runner_overhead", "sagepipe_tracked.per_step_s", "s",
           0.1, peer_name="untracked", peer="sagepipe.per_step_s"),
    Figure("runner", "per-step overhead, tracked / untracked", "runner_overhead", "tracked_over_untracked.per_step",
           "x", 1.5),
    Figure("runner", "per-step overhead, untracked", "runner_overhead", "sagepipe.per_step_s", "s", 0.15,
           peer_name="Metaflow", peer="metaflow.per_step_s"),
    Figure("runner", "start-up, 1-step pipeline", "runner_overhead", "sagepipe.startup_s", "s", 0.6,
           peer_name="Metaflow", peer="metaflow.startup_s"),
    Figure("endpoint", "single-row JSON, concurrency 8", "serving_speed", "sagepipe_single_c8.requests_per_s",
           "req/s", 30, AT_LEAST, "MLflow scoring server", "mlflow_single_c8.requests_per_s", "ratio_single_c8_rps",
           on_ratio=True),
    Figure("endpoint", "single-row JSON, concurrency 8, p99", "serving_speed", "sagepipe_single_c8.p99_ms", "ms", 5,
           peer_name="MLflow scoring server", peer="mlflow_single_c8.p99_ms"),
    Figure("endpoint", "1,000-row JSON batches, concurrency 4", "serving_speed", "sagepipe_batch1000_c4.rows_per_s",
           "rows/s", 5, AT_LEAST, "MLflow scoring server", "mlflow_batch1000_c4.rows_per_s", "ratio_batch_rows_per_s",
           on_ratio=True),
    Figure("endpoint", "errors, every level, both servers", "serving_speed", "errors", "", 0, EQUALS),
    Figure("endpoint", "single row, concurrency 1, p50", "serving_speed", "sagepipe_single_c1.p50_ms", "ms",
           peer_name="in-process Booster.predict, 1 row", peer="floor_predict_1row_ms"),
    Figure("endpoint", "1,000-row batch, p50", "serving_speed", "sagepipe_batch1000_c4.p50_ms", "ms",
           peer_name="in-process Booster.predict, 1,000 rows", peer="floor_predict_1000rows_ms"),
    # issue 26: a bounded number of connections, /ping answered at the bound
    Figure("endpoint", "/ping answered (of 20), 2,200 slow-body clients connected", "serving_connections",
           "slow.pings_answered", "", 20, EQUALS),
    Figure("endpoint", "200 clients at once, single-row JSON", "serving_connections", "normal_c200.requests_per_s",
           "req/s"),
    Figure("endpoint", "200 clients at once, errors", "serving_connections", "normal_c200.errors", "", 0, EQUALS),
    Figure("scale", "example at 5M rows, wall", "scale", "rows_5000000.wall_s", "s", 150,
           peer_name="before (issue 19)", peer="before_5M.wall_s"),
    Figure("scale", "example at 5M rows, largest step peak RSS", "scale", "rows_5000000.peak_step_rss_mb", "MB", 3072,
           peer_name="before (issue 19)", peer="before_5M.peak_step_rss_mb"),
    Figure("scale", "time grows no faster than linearly", "scale", "linear_or_better", "", True, EQUALS),
    Figure("scale", "data-quality gate, 50k rows (Arrow checker)", "scale", "gate_fixed_cost.arrow_check_50k_rows_s",
           "s", 1, peer_name="import great_expectations alone", peer="gate_fixed_cost.import_great_expectations_s",
           on_ratio=True),
    Figure("compile", "cold compile", "compile_speed", "compile_wall_s.best", "s", 6),
    Figure("compile", "validate", "compile_speed", "validate_wall_s.best", "s", 0.5),
    # earlier issues, still measured
    Figure("pipeline", "example, 5,000 rows, first run", "pipeline_speed", "rows_5000.pipeline_wall_s", "s", 60,
           peer_name="the scripts run by hand", peer="rows_5000.direct_scripts_wall_s",
           ratio="rows_5000.overhead_ratio"),
    Figure("pipeline", "example / scripts by hand", "pipeline_speed", "rows_5000.overhead_ratio", "x", 1.3),
    Figure("emulate", "emulate / run, wall (median), cold", "emulate_overhead", "ratio_median", "x", 1.5),
    Figure("emulate", "emulate / run, compile cached", "emulate_overhead", "warm_compile_ratio_median", "x", 1.5),
    Figure("emulate", "emulate / run, after a code edit (compile brought up to date)", "emulate_overhead",
           "code_edit_ratio_median", "x", 1.5),
    Figure("emulate", "second emulation, every job cached / first", "emulate_overhead", "again_share_median", "",
           0.15),
    Figure("transform", "batch transform peak RSS", "transform_memory", "peak_rss_mb", "MB", 2048),
    Figure("tuning", "2 parallel jobs / 1, speed-up", "tuning_speed", "speedup_parallel_2_over_1", "x"),
    Figure("ddp", "2 processes / 1, samples/s", "ddp_throughput", "speedup_2_over_1", "x"),
    Figure("chaos", "runs whose outputs differ from a clean run", "chaos", "outputs_differ", "", 0, EQUALS),
    Figure("chaos", "damaged cache entries", "chaos", "cache_entries_damaged", "", 0, EQUALS),
    Figure("chaos", "leftover processes", "chaos", "leftover_processes", "", 0, EQUALS),
]


def _get(data: dict[str, Any] | None, path: str) -> Any:
    node: Any = data
    for key in path.split(".") if path else ():
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def evaluate(figure: Figure, data: dict[str, Any] | None) -> dict[str, Any]:
    """One row of the summary: value, target, peer, ratio and status ("pass", "FAIL", "not measured", "-")."""
    value, peer = _get(data, figure.value), _get(data, figure.peer)
    ratio = _number(_get(data, figure.ratio)) if figure.ratio else None
    if ratio is None and _number(value) is not None and _number(peer):
        ratio = round(_number(value) / _number(peer), 2)  # type: ignore[operator]
    if data is None or value is None:
        status = "not measured"
    elif figure.target is None:
        status = "-"
    else:
        checked = ratio if figure.on_ratio else value
        status = "not measured" if checked is None else \
            "pass" if CHECKS[figure.check](checked, figure.target) else "FAIL"
    target = None if figure.target is None else f"{'ratio ' if figure.on_ratio else ''}{figure.check} " \
        f"{_shown(figure.target)}{'' if figure.on_ratio else _unit(figure.unit)}"
    return {"area": figure.area, "figure": figure.name, "value": value, "unit": figure.unit, "target": target,
            "peer": figure.peer_name or None, "peer_value": peer, "ratio": ratio, "status": status,
            "source": f"{figure.source}.json", "measured_at": _get(data, "measured_at")}


def _unit(unit: str) -> str:
    return "" if not unit else unit if unit == "x" else f" {unit}"


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def load(results: Path) -> dict[str, dict[str, Any] | None]:
    """Every result file by name; None for one that cannot be read (the summary says "not measured")."""
    out: dict[str, dict[str, Any] | None] = {}
    for name in sorted({f.source for f in FIGURES}):
        try:
            data = json.loads((results / f"{name}.json").read_text())
        except (OSError, ValueError):
            data = None
        out[name] = data if isinstance(data, dict) else None
    return out


def table(rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    header = ("figure", "value", "target", "peer (same run)", "ratio", "status")
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        value = "" if row["value"] is None else f"{_shown(row['value'])}{_unit(row['unit'])}"
        peer = "" if row["peer"] is None else \
            f"{row['peer']}: {'-' if row['peer_value'] is None else _shown(row['peer_value']) + _unit(row['unit'])}"
        ratio = "" if row["ratio"] is None else f"{row['ratio']:.3g}x"
        lines.append((f"{row['area']}: {row['figure']}", value, row["target"] or "", peer, ratio, row["status"]))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of benchmark results")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (the README's)")
    args = parser.parse_args()
    data = load(args.results)
    rows = [evaluate(figure, data[figure.source]) for figure in FIGURES]
    counts = {status: sum(r["status"] == status for r in rows) for status in ("pass", "FAIL", "not measured")}
    lines = table(rows)
    if args.markdown:
        print("| " + " | ".join(lines[0]) + " |\n|" + "---|" * len(lines[0]))
        for line in lines[1:]:
            print("| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |")
    else:
        widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
        for line in lines:
            print("  " + "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    print(f"  {counts['pass']} pass, {counts['FAIL']} fail, {counts['not measured']} not measured"
          + ("" if args.markdown else f"  -> {args.results / 'summary.json'}"))
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "summary.json").write_text(json.dumps(
        {"figures": rows, "counts": counts, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2))


if __name__ == "__main__":
    main()
