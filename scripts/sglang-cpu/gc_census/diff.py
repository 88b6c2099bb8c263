"""Which object types grew between two censuses: python3 diff.py A.json B.json [TOP=25]."""
import json
import sys

a, b = (json.load(open(p)) for p in sys.argv[1:3])
top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
grown = sorted(((b.get(k, 0) - a.get(k, 0), k) for k in set(a) | set(b)), reverse=True)
for d, k in grown[:top]:
    if d:
        print("%+8d  %s  (%d -> %d)" % (d, k, a.get(k, 0), b.get(k, 0)))
