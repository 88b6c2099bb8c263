"""Stub of uvloop for the GPU tier (installed only where the real one is missing). SGLang 0.5.23
sets `asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())` at module load and serves with
`uvloop.run(...)`; here both are the standard asyncio loop: the same behaviour, a little slower."""

import asyncio

__version__ = "0.0.0+memtest.stub"

Loop = asyncio.SelectorEventLoop
EventLoopPolicy = asyncio.DefaultEventLoopPolicy


def new_event_loop():
    return asyncio.new_event_loop()


def install():
    asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main, *, debug=None, **kwargs):
    return asyncio.run(main, debug=debug)
