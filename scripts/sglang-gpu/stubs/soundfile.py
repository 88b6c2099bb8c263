"""Stub of soundfile for the GPU tier (installed only where the real one is missing: the wheel
needs cffi and libsndfile). SGLang 0.5.23 imports it at module load for its audio routes; text and
image serving never call it. Every entry point raises, so an audio request fails loudly."""

__version__ = "0.0.0+memtest.stub"
__libsndfile_version__ = "0.0.0"


class LibsndfileError(RuntimeError):
    pass


SoundFileError = SoundFileRuntimeError = LibsndfileError


def _unavailable(*args, **kwargs):
    raise LibsndfileError("soundfile is a stub here (sglang-memtest GPU tier): audio is not supported")


read = write = info = blocks = available_formats = available_subtypes = _unavailable


class SoundFile:
    def __init__(self, *args, **kwargs):
        _unavailable()
