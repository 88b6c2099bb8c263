#!/usr/bin/env python3
"""Write the residuals of one metric of a clean run's JSON report as a noise file for
`sglang-memtest calibrate` (fixtures/noise/*.csv): the readings after the run's own warm-up cut,
less the run's Theil-Sen line, one per line, after a header that states the run and the line's
slope (`# slope_per_request: X`). The calibration resamples them in blocks on top of that slope.

    scripts/extract-noise.py REPORT.json METRIC OUT.csv "what the run was"

METRIC is a report metric name (`host.rss@tree`) or `role:<role>` (the process of that role,
e.g. `role:scheduler`). The run must be clean: its verdict is checked to be pass.
"""
import json
import sys


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    path, metric, out, what = sys.argv[1:]
    report = json.load(open(path))
    if report.get("outcome") != "pass":
        print(f"{path}: outcome {report.get('outcome')!r}; noise comes from clean runs only", file=sys.stderr)
        return 1
    per_request = report["timeline"]["per_request"]
    if metric.startswith("role:"):
        role = metric[5:]
        pids = [p for p, info in report["timeline"]["processes"].items() if info.get("role") == role]
        if len(pids) != 1:
            print(f"{path}: {len(pids)} processes of role {role!r}", file=sys.stderr)
            return 1
        metric = f"host.rss@pid:{pids[0]}"
    series = per_request.get(metric)
    if series is None:
        print(f"{path}: no per-request series {metric!r}; have {sorted(per_request)}", file=sys.stderr)
        return 1
    if series["batch"] != 1:
        print(f"{path}: {metric} is in batches of {series['batch']}; use a run of at most 2000 requests", file=sys.stderr)
        return 1
    analysis = next(m for m in report["verdict"]["metrics"] if m["metric"] == metric)
    cut = analysis["warmup_cut"]
    slope = analysis["slope"]["point"]
    points = [(x, y) for x, y in zip(series["x"], series["y"]) if y is not None and x >= series["x"][0] + cut]
    offsets = sorted(y - slope * x for x, y in points)
    intercept = offsets[len(offsets) // 2]
    with open(out, "w") as f:
        f.write(f"# {what}: residuals of {metric} of {report['scenario']} ({report['tool']}, {report['started_at']}), "
                f"{len(points)} requests after a warm-up cut of {cut}, bytes\n")
        f.write(f"# slope_per_request: {slope:.1f}\n")
        for x, y in points:
            f.write(f"{y - intercept - slope * x:.0f}\n")
    print(f"{out}: {len(points)} residuals, slope {slope:.1f} B/request, cut {cut}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
