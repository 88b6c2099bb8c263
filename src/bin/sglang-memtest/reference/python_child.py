# A child of the reference server in Python (`serve-reference --python-children`): the same line
# protocol as `sglang-memtest reference-child` (see children.rs), host leaks only, so that a
# stack tool such as py-spy has a Python process to read. argv: [title, parent pid].
import ctypes
import os
import signal
import sys

title, parent = sys.argv[1], int(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(15, title.encode()[:15], 0, 0, 0)  # PR_SET_NAME: comm, as setproctitle sets it
libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the parent
if os.getppid() != parent:
    sys.exit("the parent is gone")

held = []


def keep_request_state(n):
    """The planted leak: n bytes written and kept forever (a named frame for py-spy)."""
    block = bytearray(n)
    pages = len(range(0, n, 4096))
    block[::4096] = b"\x01" * pages
    held.append(block)


def serve():
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        verb = words[0] if words else ""
        try:
            if verb == "leak":
                keep_request_state(int(words[1]))
            elif verb in ("flush", "ping"):
                pass
            elif verb in ("gpu-leak", "gpu-alloc"):
                raise ValueError("a Python child holds host leaks only")
            else:
                raise ValueError(f"unknown command `{verb}`")
            answer = "ok"
        except Exception as e:  # every failure is an answer, never a dead child
            answer = f"err {e}"
        print(answer, flush=True)


serve()
