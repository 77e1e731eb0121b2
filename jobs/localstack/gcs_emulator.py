"""The GCS emulator's entry point, with files written so that a kill cannot tear them.

``gcp-storage-emulator`` keeps every bucket's and object's metadata in one JSON file
(``.cloudstorage/.meta``), rewritten in place on each change: truncated, then written. A
SIGKILL between the two (the fault suite kills the emulator while clients upload, and the
file grows with every archived part, so the window grows too) left it empty, and the
emulator then failed at every start ("Expecting value: line 1 column 1") — the stack's
supervisor restarted it for ever and object storage never came back.

Here every file the emulator writes on disk goes to a temporary file beside it, which
replaces the old one in one ``os.replace``: a kill leaves the old file or the new one,
never a part (not fsynced: this guards against a killed process, not a machine crash).
Then the emulator's own ``main`` runs with the command-line arguments given.

``recover_meta`` moves aside a metadata file that is not JSON (one torn before this
entry point existed), so the emulator starts: empty, but serving, and it says so.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

#: Where the emulator keeps its metadata, under its working directory.
META = Path(".cloudstorage") / ".meta"


def write_atomically(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` through a temporary file and one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.replace(temporary, path)  # no fsync: a killed process's writes are not lost
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def recover_meta(home: Path, say: Callable[[str], object] = print) -> Path | None:
    """Move a metadata file that does not parse to ``.meta.torn-<n>``; returns where."""
    meta = home / META
    try:
        json.loads(meta.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        n = 1
        while (aside := meta.with_name(f".meta.torn-{n}")).exists():
            n += 1
        meta.rename(aside)
        say(f"gcs: its metadata file was torn (a kill mid-write?); moved to {aside.name}, "
            "starting with no buckets or objects")
        return aside
    return None


def _patch() -> None:
    """Make the emulator's disk store write through ``write_atomically``."""
    from gcp_storage_emulator import storage

    original = storage._FileStore.write_bytes

    def write_bytes(self: storage._FileStore, rel: str, content: bytes) -> None:
        if self._use_memory:
            original(self, rel, content)
        else:  # _disk_path normalises rel; write_atomically makes the parent folders
            write_atomically(self._disk_path(rel), content)

    storage._FileStore.write_bytes = write_bytes


def main() -> None:
    """Recover a torn metadata file, patch the store, run the emulator."""
    recover_meta(Path.cwd(), say=lambda line: print(line, file=sys.stderr, flush=True))
    _patch()
    from gcp_storage_emulator.__main__ import main as emulator

    emulator(sys.argv[1:])


if __name__ == "__main__":
    main()
