"""Uploaded media: the CQL ``media`` table and the objects in the media bucket.

Clients never send file bytes to the API. ``MediaUploads.signed_upload`` returns a V4
signed URL the client PUTs the file to, straight into object storage; the API records
who announced which object (``MediaStore``) and, when a post references it, checks that
the object exists with the announced size and type (``MediaUploads.stat``).

Signing needs an RSA key of a service account. Production uses the key file configured
in ``api.signing_credentials_file``, or the runtime's own credentials through the IAM
signBlob API (workload identity has no private key). Against the GCS emulator a
throwaway key is generated: the emulator accepts ``PUT /<bucket>/<object>`` (the XML API
form of a signed URL) but does not check signatures, so the URL's form, headers and
expiry are what carries over to real GCS.

An upload URL only creates: ``x-goog-if-generation-match: 0`` is signed in, so GCS refuses
(412) a PUT over an object that exists, and content a post has published cannot be swapped
through the URL that uploaded it. The emulator ignores that precondition (its XML upload
overwrites), so locally only the signature binds the header.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.api_core import exceptions as gcs_errors
from google.cloud import storage
from google.oauth2 import service_account

from feedline.settings import StorageSettings
from feedline.stores.cql_client import CqlClient
from feedline.stores.errors import StoreUnavailable
from feedline.stores.object_store import storage_client
from schemas.cql_statements import MEDIA

#: The service account named in URLs signed with a throwaway key (emulator only).
LOCAL_SIGNER = "feedline-api@feedline-local.iam.gserviceaccount.com"
#: Where media objects live inside the media bucket.
MEDIA_FOLDER = "media"
#: The signed header that makes GCS refuse an upload of any other size.
LENGTH_HEADER = "x-goog-content-length-range"
#: The signed precondition that makes GCS refuse a PUT over an existing object.
CREATE_ONLY_HEADER = "x-goog-if-generation-match"


@dataclass(frozen=True, slots=True)
class MediaRecord:
    """A row of the media table."""

    media_id: str
    owner_id: str
    content_type: str
    bytes: int
    uri: str


@dataclass(frozen=True, slots=True)
class SignedUpload:
    """Where and how to PUT one file."""

    url: str
    method: str
    headers: dict[str, str]
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What object storage holds under a media object's name."""

    size: int
    content_type: str | None


def object_name(media_id: str) -> str:
    """The object name of a media id inside the media bucket."""
    return f"{MEDIA_FOLDER}/{media_id}"


def media_uri(bucket: str, media_id: str) -> str:
    """The ``gs://`` URI recorded for a media object."""
    return f"gs://{bucket}/{object_name(media_id)}"


def public_url(uri: str, storage_settings: StorageSettings, base_url: str | None) -> str:
    """The URL clients fetch a media object from (``base_url``: a CDN in front of it)."""
    if not uri.startswith("gs://"):
        return uri
    bucket, _, name = uri[len("gs://"):].partition("/")
    if base_url:
        return f"{base_url.rstrip('/')}/{name}"
    host = storage_settings.emulator_host or "https://storage.googleapis.com"
    return f"{host.rstrip('/')}/{bucket}/{name}"


class MediaUrls:
    """``public_url`` for one configuration, with a fast path for the media bucket."""

    def __init__(self, storage_settings: StorageSettings, base_url: str | None) -> None:
        self.storage_settings = storage_settings
        self.base_url = base_url
        self._prefix = f"gs://{storage_settings.media_bucket}/"
        self._public = public_url(self._prefix, storage_settings, base_url)

    def __call__(self, uri: str) -> str:
        """The public URL of ``uri``."""
        if uri.startswith(self._prefix):
            return self._public + uri[len(self._prefix):]
        return public_url(uri, self.storage_settings, self.base_url)


class MediaStore:
    """The CQL ``media`` table."""

    def __init__(self, client: CqlClient) -> None:
        self.client = client

    async def record(self, media: MediaRecord, created_at: datetime) -> None:
        """Remember an announced upload."""
        await self.client.execute(MEDIA["media_add"], (media.media_id, media.owner_id,
                                                   media.content_type, media.bytes, media.uri,
                                                   created_at))

    async def get_many(self, media_ids: Sequence[str]) -> dict[str, MediaRecord]:
        """The recorded uploads among ``media_ids``."""
        rows = await self.client.execute_many([(MEDIA["media"], (m,)) for m in media_ids])
        found = {}
        for result in rows:
            if result:
                r = result[0]
                found[r.media_id] = MediaRecord(r.media_id, r.owner_id, r.content_type,
                                                int(r.bytes or 0), r.uri)
        return found


def local_signing_credentials(project: str) -> service_account.Credentials:
    """Service-account credentials around a freshly generated RSA key (emulator only)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": project, "private_key_id": "local",
            "private_key": pem, "client_email": LOCAL_SIGNER, "client_id": "0",
            "token_uri": "https://oauth2.googleapis.com/token"}
    return service_account.Credentials.from_service_account_info(info)


class MediaUploads:
    """Signs upload URLs and inspects uploaded objects (blocking calls run in threads)."""

    def __init__(self, settings: StorageSettings, *,
                 credentials_file: Path | None = None) -> None:
        self.settings = settings
        key_credentials = (
            service_account.Credentials.from_service_account_file(str(credentials_file))
            if credentials_file is not None else None)
        if key_credentials is not None and not settings.emulator_host:
            self.client = storage.Client(project=settings.project, credentials=key_credentials)
        else:
            self.client = storage_client(settings)
        self.bucket = self.client.bucket(settings.media_bucket)
        # Explicit endpoint: the library would otherwise follow STORAGE_EMULATOR_HOST,
        # which storage_client sets process-wide.
        endpoint = (settings.emulator_host or "https://storage.googleapis.com").rstrip("/")
        self._sign_kwargs: dict[str, Any] = {"api_access_endpoint": endpoint}
        if key_credentials is not None:
            self._sign_kwargs["credentials"] = key_credentials
        elif settings.emulator_host:
            self._sign_kwargs["credentials"] = local_signing_credentials(settings.project)

    def _runtime_signer(self) -> dict[str, Any]:
        """Sign through IAM signBlob with the runtime's service account (no key file)."""
        import google.auth
        from google.auth.transport.requests import Request

        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"])
        credentials.refresh(Request())
        return {"service_account_email": getattr(credentials, "service_account_email", None),
                "access_token": credentials.token}

    def signed_upload(self, media_id: str, content_type: str, size: int,
                      expires_in: timedelta, now: datetime) -> SignedUpload:
        """A V4 signed PUT URL for exactly ``size`` bytes of ``content_type``, create-only."""
        signed = {LENGTH_HEADER: f"{size},{size}", CREATE_ONLY_HEADER: "0"}  # create-only
        headers = {"Content-Type": content_type, **signed}
        kwargs = dict(self._sign_kwargs)
        if "credentials" not in kwargs:  # no key here: the runtime's account signs via IAM
            kwargs.update(self._runtime_signer())
        blob = self.bucket.blob(object_name(media_id))
        url = blob.generate_signed_url(
            version="v4", method="PUT", expiration=expires_in, content_type=content_type,
            headers=signed, **kwargs)
        return SignedUpload(url, "PUT", headers, now + expires_in)

    def stat(self, media_id: str) -> StoredObject | None:
        """Size and type of an uploaded object, or None when nothing was uploaded."""
        blob = self.bucket.blob(object_name(media_id))
        try:
            blob.reload(timeout=5)
        except gcs_errors.NotFound:
            return None
        except (gcs_errors.GoogleAPIError, OSError) as error:
            raise StoreUnavailable("storage", f"{type(error).__name__}: {error}") from error
        return StoredObject(int(blob.size or 0), blob.content_type)

    def ping(self) -> bool:
        """The media bucket is reachable."""
        try:
            return self.client.lookup_bucket(self.settings.media_bucket, timeout=2) is not None
        except (gcs_errors.GoogleAPIError, OSError) as error:
            raise StoreUnavailable("storage", str(error)) from error
