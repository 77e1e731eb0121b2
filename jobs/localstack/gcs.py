"""The GCS emulator (PyPI ``gcp-storage-emulator``) standing in for Cloud Storage."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit

from feedline.settings import REPO_ROOT
from feedline.stores.object_store import storage_client
from jobs.localstack.base import Service


class GcsEmulatorService(Service):
    """Object storage on loopback, data kept on disk under the state directory."""

    name = "gcs"

    def _url(self) -> str:
        url = self.settings.storage.emulator_host
        if not url:
            raise ValueError("storage.emulator_host is unset: the local stack needs the emulator")
        return url

    def endpoint(self) -> str:
        """Emulator URL (STORAGE_EMULATOR_HOST)."""
        return self._url()

    def prepare(self) -> None:
        """Nothing to write: the emulator keeps its files in its working directory."""

    def command(self) -> tuple[list[str], Mapping[str, str]]:
        """Run the emulator through ``jobs.localstack.gcs_emulator``.

        That entry point writes the emulator's files so that a kill cannot tear them.
        """
        parts = urlsplit(self._url())
        argv = [
            sys.executable, "-m", "jobs.localstack.gcs_emulator",
            "start",
            "--host",
            parts.hostname or "127.0.0.1",
            "--port",
            str(parts.port or 9023),
            "--default-bucket",
            self.settings.storage.media_bucket,
            "--quiet",
        ]
        return argv, {"PYTHONPATH": str(REPO_ROOT)}

    def marker(self) -> str:
        """The emulator's command line names its port."""
        return f"--port {urlsplit(self._url()).port or 9023}"

    def healthy(self) -> bool:
        """The JSON API lists buckets."""
        try:
            with urllib.request.urlopen(f"{self._url()}/storage/v1/b?project=x", timeout=2) as r:  # noqa: S310
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def after_healthy(self) -> None:
        """Create the media and archive buckets, without soft delete.

        The emulator keeps every bucket's and object's metadata in one JSON file, rewritten
        whole on each change, and a soft-deleted object stays in it (with a copy of its
        content) for the 7 days GCS keeps one by default. Tests delete what they archive:
        two runs of the parity test left 2,280 soft-deleted objects and a 3 MB file, so
        every later write (the archiver's parts, an upload) cost more. Deleted here is gone.
        """
        client = storage_client(self.settings.storage)
        for name in (self.settings.storage.media_bucket, self.settings.storage.archive_bucket):
            bucket = client.lookup_bucket(name) or client.create_bucket(name)
            if bucket.soft_delete_policy.retention_duration_seconds != 0:
                bucket.soft_delete_policy.retention_duration_seconds = 0
                bucket.patch()
