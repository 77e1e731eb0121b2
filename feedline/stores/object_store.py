"""Object storage (Google Cloud Storage; the GCS emulator locally)."""

from __future__ import annotations

import os

from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from feedline.settings import StorageSettings


def storage_client(settings: StorageSettings) -> storage.Client:
    """A google-cloud-storage client; talks to the emulator when one is configured.

    The library reads ``STORAGE_EMULATOR_HOST`` from the environment, so it is set here
    from settings (and for any Beam worker started from this process).
    """
    if settings.emulator_host:
        os.environ["STORAGE_EMULATOR_HOST"] = settings.emulator_host
        return storage.Client(project=settings.project, credentials=AnonymousCredentials())
    return storage.Client(project=settings.project)
