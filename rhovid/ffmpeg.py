"""Where the ffmpeg binary comes from.

DESIGN.md decision 7: the pip-only setup uses the ffmpeg that ships inside the
``imageio-ffmpeg`` wheel (ffmpeg with libx264/libvpx). ``RHOVID_FFMPEG`` overrides it, e.g.
to compare against a system build. There is no ffprobe; probing uses PyAV.
"""

from __future__ import annotations

import functools
import os
import shutil

from rhovid.errors import NotFoundError

ENV_VAR = "RHOVID_FFMPEG"


@functools.cache
def ffmpeg_exe() -> str:
    """Absolute path of the ffmpeg binary to run (``$RHOVID_FFMPEG`` or imageio-ffmpeg's)."""
    override = os.environ.get(ENV_VAR)
    if override:
        found = shutil.which(override) or (override if os.path.isfile(override) else None)
        if not found:
            raise NotFoundError(f"${ENV_VAR}={override!r} is not an executable file")
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()
