"""The upload URL is a real GCS V4 signature over exactly the headers the API tells the
client to send (checked offline with the signing key's public half)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from feedline.settings import StorageSettings
from feedline.stores.media_store import CREATE_ONLY_HEADER, LENGTH_HEADER, MediaUploads

EMULATOR = "http://127.0.0.1:9023"


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, rsa.RSAPublicKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = tmp_path_factory.mktemp("sa") / "key.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "p", "private_key_id": "k1",
        "private_key": pem, "client_email": "signer@p.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"}))
    return path, key.public_key()


def verify_v4(url: str, method: str, headers: dict[str, str], public_key: rsa.RSAPublicKey) -> None:
    """Recompute the V4 string-to-sign (cloud.google.com/storage/docs/authentication/signatures)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    signature = bytes.fromhex(query.pop("X-Goog-Signature"))
    all_headers = {k.lower(): v.strip() for k, v in headers.items()}
    all_headers["host"] = parts.netloc
    signed = query["X-Goog-SignedHeaders"].split(";")
    assert sorted(all_headers) == signed  # the client's headers are exactly the signed ones
    canonical_query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}"
                               for k, v in sorted(query.items()))
    canonical_headers = "".join(f"{name}:{all_headers[name]}\n" for name in signed)
    canonical_request = "\n".join([method, parts.path, canonical_query, canonical_headers,
                                   ";".join(signed), "UNSIGNED-PAYLOAD"])
    scope = query["X-Goog-Credential"].split("/", 1)[1]
    string_to_sign = "\n".join(["GOOG4-RSA-SHA256", query["X-Goog-Date"], scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()])
    public_key.verify(signature, string_to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())


def test_signed_put_verifies_with_the_advertised_headers(key_file) -> None:
    path, public_key = key_file
    uploads = MediaUploads(StorageSettings(emulator_host=EMULATOR), credentials_file=path)
    now = datetime.now(UTC)
    upload = uploads.signed_upload("m123", "image/png", 1234, timedelta(minutes=15), now)
    assert upload.method == "PUT"
    assert upload.url.startswith(f"{EMULATOR}/feedline-media/media/m123?")
    assert upload.headers == {"Content-Type": "image/png", LENGTH_HEADER: "1234,1234",
                              CREATE_ONLY_HEADER: "0"}
    assert upload.expires_at == now + timedelta(minutes=15)
    query = dict(parse_qsl(urlsplit(upload.url).query))
    assert query["X-Goog-Expires"] == "900"
    assert query["X-Goog-Credential"].startswith("signer@p.iam.gserviceaccount.com/")
    verify_v4(upload.url, "PUT", upload.headers, public_key)
    with pytest.raises(InvalidSignature):  # another type, size or method breaks it
        verify_v4(upload.url, "PUT", {**upload.headers, "Content-Type": "video/mp4"}, public_key)
    with pytest.raises(InvalidSignature):
        verify_v4(upload.url, "PUT", {**upload.headers, LENGTH_HEADER: "0,99999999"}, public_key)
    with pytest.raises(InvalidSignature):
        verify_v4(upload.url, "GET", upload.headers, public_key)
    with pytest.raises(InvalidSignature):  # create-only is bound: no PUT over an object
        verify_v4(upload.url, "PUT", {**upload.headers, CREATE_ONLY_HEADER: "1764"}, public_key)
    without = {k: v for k, v in upload.headers.items() if k != CREATE_ONLY_HEADER}
    with pytest.raises(AssertionError):  # nor without the precondition
        verify_v4(upload.url, "PUT", without, public_key)


def test_real_gcs_urls_without_an_emulator(key_file) -> None:
    path, public_key = key_file
    uploads = MediaUploads(StorageSettings(emulator_host=None), credentials_file=path)
    upload = uploads.signed_upload("m9", "video/mp4", 10, timedelta(hours=1), datetime.now(UTC))
    assert upload.url.startswith("https://storage.googleapis.com/feedline-media/media/m9?")
    verify_v4(upload.url, "PUT", upload.headers, public_key)


def test_emulator_without_a_key_file_signs_with_a_throwaway_key() -> None:
    uploads = MediaUploads(StorageSettings(emulator_host=EMULATOR))
    upload = uploads.signed_upload("m1", "image/jpeg", 5, timedelta(minutes=5), datetime.now(UTC))
    assert upload.url.startswith(f"{EMULATOR}/feedline-media/media/m1?X-Goog-Algorithm=")
