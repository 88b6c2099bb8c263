"""One compact block per sglang-memtest report: outcome, length, every judged metric by process role
(outcome, slope per request with its interval, growth, warm-up cut), SGLang's idle accounting.

    python3 summarize.py DIR_OR_REPORT.json ...        # stdlib only; any Python 3.8+

Reports are found recursively (`*.json` with a `schema_version`). Used by run-bundle.sh after each
phase, and to read a GPU run's reports afterwards.
"""

import json
import os
import sys

KIB, MIB = 1024.0, 1024.0 * 1024.0


def size(b):
    if b is None:
        return "-"
    a = abs(b)
    if a >= MIB:
        return "%.2f MiB" % (b / MIB)
    if a >= KIB:
        return "%.1f KiB" % (b / KIB)
    return "%.0f B" % b


def reports(paths):
    for p in paths:
        if os.path.isdir(p):
            for root, _, files in sorted(os.walk(p)):
                for f in sorted(files):
                    if f.endswith(".json") and "memory_data" not in f:
                        yield os.path.join(root, f)
        else:
            yield p


def role(r, metric):
    if "@pid:" not in metric:
        return metric
    pid = metric.rsplit(":", 1)[1]
    p = (r.get("timeline") or {}).get("processes", {}).get(pid) or {}
    return "%s (%s)" % (metric.split("@")[0] + "@" + (p.get("role") or p.get("name") or "?"), pid)


def summary(path, r):
    out = []
    req = r.get("requests") or {}
    ad = r.get("adaptive") or {}
    out.append("== %s: %s, %s" % (r.get("scenario"), str(r.get("outcome")).upper(), path))
    out.append("   requests sent %s measured %s failed %s; planned %s budget %s stopped %s; %.0f s" % (
        req.get("sent"), req.get("measured"), req.get("failed"), ad.get("planned"), ad.get("budget"),
        ad.get("stopped"), (r.get("duration_ms") or 0) / 1000.0))
    err = r.get("error")
    if err:
        out.append("   error (%s): %s" % (err.get("kind"), err.get("message", "")[:400]))
    for m in (r.get("verdict") or {}).get("metrics", []):
        if not m.get("judged"):
            continue
        s = m.get("slope") or {}
        ci = s.get("ci") or {}
        out.append("   %-12s %-44s %s/req [%s .. %s]  growth %s  cut %s  n %s" % (
            m.get("outcome"), role(r, m["metric"]), size(s.get("point")), size(ci.get("lo")),
            size(ci.get("hi")), size(m.get("growth")), m.get("warmup_cut", m.get("warmup", "-")), m.get("n")))
    ia = r.get("idle_accounting") or {}
    for c in ia.get("checks") or []:
        out.append("   idle %-26s %-12s before %s after %s per request %s" % (
            c.get("metric"), c.get("outcome"), c.get("before"), c.get("after"), c.get("per_request")))
    lw = r.get("log_watch") or {}
    if lw.get("total_matches"):
        out.append("   log: %s matches, first: %s" % (lw.get("total_matches"), (lw.get("matches") or [{}])[0]))
    return "\n".join(out)


def main(argv):
    if not argv:
        sys.exit("usage: summarize.py DIR_OR_REPORT.json ...")
    n = 0
    for path in reports(argv):
        try:
            with open(path) as f:
                r = json.load(f)
        except (OSError, ValueError):
            continue
        if not isinstance(r, dict) or "schema_version" not in r:
            continue
        n += 1
        print(summary(path, r))
    if n == 0:
        print("summarize: no sglang-memtest report under %s" % " ".join(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
