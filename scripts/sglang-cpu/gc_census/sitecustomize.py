"""Diagnosis helper: counts of live Python objects by type, in SGLang's tokenizer manager and
scheduler, after given request counts. Put this folder on the server's PYTHONPATH:

    MEMTEST_GC_CENSUS_DIR=/tmp/census MEMTEST_GC_CENSUS_AT=200,1200

Each process writes <dir>/<role>-<request>.json ({type name: count}, after a gc.collect()).
Compare two files to see which objects pile up (scripts/sglang-cpu/gc_census/diff.py).
"""

import collections
import gc
import importlib.abc
import importlib.util
import json
import os
import sys

_DIR = os.environ.get("MEMTEST_GC_CENSUS_DIR")
_AT = {int(x) for x in os.environ.get("MEMTEST_GC_CENSUS_AT", "").split(",") if x.strip()}
_SEEN = collections.Counter()


def _census(role):
    _SEEN[role] += 1
    n = _SEEN[role]
    if n not in _AT:
        return
    gc.collect()
    counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    with open(os.path.join(_DIR, "%s-%d.json" % (role, n)), "w") as f:
        json.dump(dict(counts.most_common()), f)


def _patch_tm(module):
    cls = module.TokenizerManager
    original = cls.generate_request

    async def generate_request(self, obj, request=None):
        # Counted as the request comes in: a non-streaming caller takes one item and never
        # finishes the generator, so nothing after the loop would run.
        _census("tokenizer_manager")
        async for r in original(self, obj, request):
            yield r

    cls.generate_request = generate_request


def _patch_sched(module):
    cls = module.Scheduler
    original = cls.handle_generate_request

    def handle_generate_request(self, recv_req, *a, **k):
        _census("scheduler")
        return original(self, recv_req, *a, **k)

    cls.handle_generate_request = handle_generate_request


_PATCHES = {
    "sglang.srt.managers.tokenizer_manager": _patch_tm,
    "sglang.srt.managers.scheduler": _patch_sched,
}


class _Loader(importlib.abc.Loader):
    def __init__(self, inner, patch):
        self.inner, self.patch = inner, patch

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        self.patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        patch = _PATCHES.get(fullname)
        if patch is None:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, patch)
        return spec


if _DIR and _AT:
    os.makedirs(_DIR, exist_ok=True)
    sys.meta_path.insert(0, _Finder())
