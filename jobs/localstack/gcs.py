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
        """Create the media and archive buckets."""
        client = storage_client(self.settings.storage)
        for bucket in (self.settings.storage.media_bucket, self.settings.storage.archive_bucket):
            if client.lookup_bucket(bucket) is None:
                client.create_bucket(bucket)
