"""Print each process's RSS (MiB) at every Nth measured request of a sglang-memtest report.

    python3 scripts/sglang-cpu/rss-by-request.py REPORT.json [EVERY=100]
"""
import bisect
import json
import sys

report = json.load(open(sys.argv[1]))
every = int(sys.argv[2]) if len(sys.argv) > 2 else 100
tl = report["timeline"]
marks = [m for m in tl["marks"] if m["phase"] == "measure"]
procs = tl["processes"]
cols = []
for name, series in sorted(tl["series"].items()):
    if not name.startswith("host.rss@"):
        continue
    pid = name.split("@pid:")[-1] if "@pid:" in name else None
    label = (procs[pid].get("role") or procs[pid]["name"]) if pid else "tree"
    pts = series["points"]
    cols.append((label, [p["t_us"] for p in pts], [p["v"] for p in pts]))
print("request " + " ".join("%18s" % c[0] for c in cols))
for m in marks[::every] + marks[-1:]:
    row = []
    for _, ts, vs in cols:
        i = bisect.bisect_right(ts, m["t_us"]) - 1
        row.append("%18.1f" % (vs[i] / 2**20) if i >= 0 else "%18s" % "-")
    print("%7d " % m["request"] + " ".join(row))
