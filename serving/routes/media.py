"""Media uploads: a signed URL to PUT the file into object storage, then the verdict.

``POST /v1/media/{id}/complete`` hands the upload to the media worker;
``GET /v1/media/{id}`` reads what it found.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path
from starlette.responses import Response

from feedline.logs import annotate
from feedline.media import messages
from feedline.media.messages import MediaUploaded
from feedline.stores.media_store import MediaRecord, MediaStore, media_uri
from serving.auth import ID_PATTERN
from serving.deps import CurrentUser, MediaStoreDep, MediaUploadsDep, ResourcesDep, SettingsDep
from serving.ids import new_media_id
from serving.models import MediaCreate, MediaState, MediaUpload
from serving.problems import ApiProblem
from serving.responses import PROBLEMS, JsonResponse, problem_doc

router = APIRouter(prefix="/v1/media", tags=["media"])

MediaId = Annotated[str, Path(pattern=ID_PATTERN, description="A media id.")]


@router.post("", status_code=201, response_model=MediaUpload,
             responses={**PROBLEMS, 413: problem_doc("The request body is too large.")},
             summary="Announce an upload")
async def create_media(body: MediaCreate, user: CurrentUser, settings: SettingsDep,
                       media: MediaStoreDep, media_uploads: MediaUploadsDep) -> Response:
    """Get a signed URL to upload one photo or video.

    PUT exactly `bytes` bytes to `upload_url` with the `upload_headers` before it expires,
    call `POST /v1/media/{media_id}/complete`, wait until `GET /v1/media/{media_id}` says
    `ready`, then reference `media_id` in `POST /v1/posts`.
    """
    api = settings.api
    if body.bytes > api.media_max_bytes:
        detail = f"at most {api.media_max_bytes} bytes"
        raise ApiProblem(422, "validation-error", f"body bytes: {detail}",
                         title="Request validation failed",
                         errors=[{"location": "body", "field": "bytes", "message": detail}])
    media_id = new_media_id()
    annotate(media_id=media_id)  # the access line names it, as the media worker's lines do
    now = datetime.now(UTC).replace(microsecond=0)
    uploads = await media_uploads()
    signed = await asyncio.to_thread(uploads.signed_upload, media_id, body.content_type,
                                     body.bytes, timedelta(seconds=api.upload_url_ttl_s), now)
    record = MediaRecord(media_id, user, body.content_type, body.bytes,
                         media_uri(settings.storage.media_bucket, media_id))
    await media.record(record, now)
    answer = MediaUpload(media_id=media_id, upload_url=signed.url, upload_headers=signed.headers,
                         expires_at=signed.expires_at)
    return JsonResponse(answer.model_dump(mode="json"), status_code=201)


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: problem_doc("No such upload of yours (nor a published one).")}


def media_state(record: MediaRecord, media_url: Callable[[str], str]) -> dict[str, Any]:
    """A ``MediaState`` as JSON data."""
    return {
        "media_id": record.media_id,
        "status": record.status or "processing",
        "reason": record.reason,
        "content_type": record.content_type,
        "width": record.width,
        "height": record.height,
        "duration_ms": record.duration_ms,
        "renditions": [{"url": media_url(r.uri), "width": r.width, "height": r.height,
                        "content_type": r.content_type} for r in record.renditions],
        "placeholder": record.placeholder,
    }


async def _own(media: MediaStore, media_id: str, user: str) -> MediaRecord:
    record = await media.get(media_id)
    if record is None or record.owner_id != user:
        raise ApiProblem(404, "media-not-found", f"{media_id} is not a media upload of yours")
    return record


@router.post("/{media_id}/complete", status_code=202, response_model=MediaState,
             responses={**PROBLEMS, **_NOT_FOUND,
                        409: problem_doc("Nothing was uploaded to the upload URL yet.")},
             summary="Finish an upload")
async def complete_media(media_id: MediaId, user: CurrentUser, resources: ResourcesDep,
                         media_uploads: MediaUploadsDep) -> Response:
    """Tell the platform the PUT is done: the upload is checked and rendered.

    Poll `GET /v1/media/{media_id}` until `status` is `ready` (or `rejected`, with a
    `reason`). Calling it again is harmless: an upload is processed once.
    """
    record = await _own(resources.media, media_id, user)
    if record.status is None:
        uploads = await media_uploads()
        if await asyncio.to_thread(uploads.stat, media_id) is None:
            raise ApiProblem(409, "media-not-uploaded",
                             f"{media_id} has not been uploaded yet (PUT the file to its "
                             "upload_url first)")
        resources.publisher.check_open()
        now = datetime.now(UTC)
        await resources.media.completed(media_id, now)
        await resources.publisher.publish_record(
            resources.settings.kafka.media_topic, media_id.encode(),
            messages.encode(MediaUploaded(media_id, "api", user), now))
    return JsonResponse(media_state(record, resources.media_url), status_code=202)


@router.get("/{media_id}", response_model=MediaState, responses={**PROBLEMS, **_NOT_FOUND},
            summary="Read an upload's processing state")
async def get_media(media_id: MediaId, user: CurrentUser, resources: ResourcesDep) -> Response:
    """Status, dimensions, renditions and placeholder: its owner's until a post shows it."""
    record = await resources.media.get(media_id)
    if record is None or (record.owner_id != user and not record.published):
        raise ApiProblem(404, "media-not-found", f"{media_id} does not exist or is not yours")
    return JsonResponse(media_state(record, resources.media_url))
