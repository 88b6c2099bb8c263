"""sglang-memtest's Python heap attribution (`--py-heap`): where a Python server's heap grows.

The harness writes this file into the run folder and puts its folder first on the server's
PYTHONPATH, with MEMTEST_PY_HEAP_DIR naming the run's exchange folder. Every Python process of
the server imports it at startup (SGLang's and vLLM's spawned children start a fresh interpreter
and inherit PYTHONPATH; forked children carry it over), and each:

1. writes `<pid>.json` (its state) into the exchange folder;
2. runs a daemon thread that reads the folder's `control` file every 0.2 s. The harness writes
   `<seq> begin` there after the warm-up and `<seq> end` after the last measured request.
   At `begin` the thread starts tracemalloc (MEMTEST_PY_HEAP_FRAMES frames per allocation);
   at `end` it runs a full garbage collection (which also empties CPython's free lists),
   takes a snapshot and writes the top allocation sites of what was allocated since `begin`
   and is still alive into `<pid>.json` (again at every later `end`: each is diffed against
   `begin`).

Tracing from `begin`, not from interpreter start: SGLang imports torch and its own modules in
every process, and traced from the start the launcher alone took over 5 minutes of CPU before
its first log line (measured: docs/diagnosis.md). The price: blocks allocated before `begin` are
not traced, so what the load frees of them is not subtracted, and a container made before and
grown during the load counts whole at the line that grew it. MEMTEST_PY_HEAP_START=startup
traces from interpreter start instead (an exact diff of two snapshots, the first kept in
`<pid>.begin.pickle` rather than in memory).

A thread rather than a signal: a signal to a process that did not run this file (a native
child, a `python -I`) would kill it, a handler replaces the server's own and runs inside
whatever the main thread was doing; the thread needs only the GIL.

Then it imports the next `sitecustomize` on sys.path, the one this file shadows (SGLang's
planted-leak fixture, a user's own, a distribution's), so both run. Nothing here may stop the
server: every failure is written into `<pid>.json` as a sentence instead.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_TOP = 10  # allocation sites kept per process
_STACKS = 3  # call stacks kept per site
_POLL = 0.2  # seconds between reads of the control file


def _chain():
    """Import the next sitecustomize on sys.path (not this one) so that it runs too."""
    import importlib

    me = sys.modules.get("sitecustomize")
    ours = [(i, p) for i, p in enumerate(sys.path) if os.path.abspath(p or os.curdir) == _HERE]
    for _, p in reversed(ours):
        sys.path.remove(p)
    sys.modules.pop("sitecustomize", None)
    try:
        try:
            return importlib.import_module("sitecustomize")
        except ImportError as e:
            if e.name != "sitecustomize":
                raise
            return None
    finally:
        for i, p in ours:
            sys.path.insert(min(i, len(sys.path)), p)
        if me is not None:
            sys.modules["sitecustomize"] = me


class _Heap:
    """One process's tracer: its state file, its control thread, its two snapshots."""

    def __init__(self, folder, frames, start):
        import tracemalloc

        self.tm = tracemalloc
        self.folder = folder
        self.frames = frames
        self.start = start
        self.seq = 0
        self.began = False
        if start != "begin":
            tracemalloc.start(frames)
        self.excluded = (
            tracemalloc.Filter(False, tracemalloc.__file__, all_frames=True),
            tracemalloc.Filter(False, __file__, all_frames=True),
        )
        self.state = {}
        self.reset()

    def reset(self):
        """A fresh state for this pid (also in a forked child, which keeps the parent's begin)."""
        import time

        self.pid = os.getpid()
        self.state = {
            "pid": self.pid,
            "ppid": os.getppid(),
            "argv": [a[:200] for a in sys.argv[:8]],
            "python": sys.version.split()[0],
            "frames": self.frames,
            "start": self.start,
            "started_at": time.time(),
            "state": "started",
            "seq": self.seq,
        }
        self.write()
        import threading

        t = threading.Thread(target=self.watch, name="memtest-py-heap", daemon=True)
        t.start()

    def path(self, suffix):
        return os.path.join(self.folder, "%d.%s" % (self.pid, suffix))

    def write(self):
        import json

        tmp = self.path("json.tmp")
        try:
            with open(tmp, "w") as f:
                json.dump(self.state, f)
            os.replace(tmp, self.path("json"))
        except OSError:
            pass  # the run folder is gone: nobody is listening any more

    def watch(self):
        import time

        control = os.path.join(self.folder, "control")
        me = self.pid
        while os.getpid() == me:
            time.sleep(_POLL)
            try:
                with open(control) as f:
                    words = f.read().split()
            except OSError:
                continue
            if len(words) != 2 or not words[0].isdigit() or int(words[0]) <= self.seq:
                continue
            self.seq = int(words[0])
            t0 = time.monotonic()
            try:
                if words[1] == "begin":
                    self.begin()
                elif words[1] == "end":
                    self.end()
                else:
                    raise ValueError("unknown command %r in %s" % (words[1], control))
            except Exception as e:  # a sentence in the state file, never a dead server
                self.state["state"] = "error"
                self.state["error"] = "%s: %s" % (type(e).__name__, e)
            self.state["seq"] = self.seq
            self.state[words[1] + "_ms"] = int((time.monotonic() - t0) * 1000)
            self.write()

    def stats(self):
        """Size and count per traceback (frames newest first) of what is traced now.

        A full collection first: garbage in reference cycles is not kept memory, and only the
        oldest generation's collection empties CPython's free lists. Without it, tuples, lists,
        dicts and floats that were freed but parked on a free list (up to 2000 per tuple length
        in 3.11) still count at the line that first allocated them; measured on SGLang's CPU
        engine: ~2300 `tuple(sorted(labels.items()))` of prometheus_client's /metrics parsing
        and ~3000 of its `labels()` calls, +0.4 MiB that no object held.
        """
        import gc
        import time

        t0 = time.monotonic()
        self.state["gc_collected"] = self.state.get("gc_collected", 0) + gc.collect()
        self.state["gc_ms"] = self.state.get("gc_ms", 0) + int((time.monotonic() - t0) * 1000)
        snap = self.tm.take_snapshot().filter_traces(self.excluded)
        out = [
            (tuple((f.filename, f.lineno) for f in reversed(s.traceback)), s.size, s.count)
            for s in snap.statistics("traceback")
        ]
        del snap
        return out

    def begin(self):
        import pickle
        import time

        if self.start == "begin" and not self.tm.is_tracing():
            self.tm.start(self.frames)
            stats = []
        else:
            stats = self.stats()
        with open(self.path("begin.pickle"), "wb") as f:
            pickle.dump(stats, f, protocol=pickle.HIGHEST_PROTOCOL)
        del stats
        self.began = True
        self.state.update(
            state="begun",
            begin_at=time.time(),
            traced_before=self.tm.get_traced_memory()[0],
        )

    def end(self):
        import linecache
        import pickle
        import time

        if not self.began:
            raise RuntimeError("no first snapshot was taken in this process")
        end = self.stats()
        traced_after, peak = self.tm.get_traced_memory()
        overhead = self.tm.get_tracemalloc_memory()
        with open(self.path("begin.pickle"), "rb") as f:
            begin = pickle.load(f)
        by_stack = {}
        for frames, size, count in begin:
            by_stack[frames] = [-size, -count]
        del begin
        for frames, size, count in end:
            d = by_stack.setdefault(frames, [0, 0])
            d[0] += size
            d[1] += count
        del end
        sites = {}
        for frames, (size, count) in by_stack.items():
            if size == 0 and count == 0:
                continue
            site = frames[0] if frames else ("<unknown>", 0)
            s = sites.setdefault(site, [0, 0, []])
            s[0] += size
            s[1] += count
            if size > 0:
                s[2].append((size, count, frames))
        growth = sum(s[0] for s in sites.values())
        top = []
        for (filename, lineno), (size, count, stacks) in sorted(
            sites.items(), key=lambda kv: kv[1][0], reverse=True
        )[:_TOP]:
            if size <= 0:
                break
            stacks.sort(key=lambda s: s[0], reverse=True)
            top.append(
                {
                    "file": filename,
                    "line": lineno,
                    "code": linecache.getline(filename, lineno).strip()[:200],
                    "growth": size,
                    "count": count,
                    "stacks": [
                        {
                            "growth": s,
                            "count": c,
                            "frames": ["%s:%d" % f for f in fr],
                        }
                        for s, c, fr in stacks[:_STACKS]
                    ],
                }
            )
        self.state.update(
            state="ended",
            end_at=time.time(),
            traced_after=traced_after,
            traced_peak=peak,
            tracemalloc_memory=overhead,
            growth=growth,
            sites_grown=sum(1 for s in sites.values() if s[0] > 0),
            top=top,
        )


_heap = None


def _after_fork():
    if _heap is not None:
        parent = _heap.pid
        _heap.began = False  # the parent's first snapshot is the parent's file
        _heap.reset()
        _heap.state["forked_from"] = parent
        _heap.write()


def _install():
    global _heap
    folder = os.environ.get("MEMTEST_PY_HEAP_DIR", "")
    if not folder:
        return
    try:
        frames = int(os.environ.get("MEMTEST_PY_HEAP_FRAMES", "1"))
        start = os.environ.get("MEMTEST_PY_HEAP_START", "begin")
        _heap = _Heap(folder, max(1, frames), start)
        os.register_at_fork(after_in_child=_after_fork)
    except Exception as e:  # tell the harness, keep the server running
        import json

        try:
            with open(os.path.join(folder, "%d.json" % os.getpid()), "w") as f:
                json.dump(
                    {"pid": os.getpid(), "state": "error", "error": "%s: %s" % (type(e).__name__, e)},
                    f,
                )
        except OSError:
            pass


_install()
_chained = _chain()
