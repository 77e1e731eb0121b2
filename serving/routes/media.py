"""Media uploads: a signed URL to PUT the file straight into object storage."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter
from starlette.responses import Response

from feedline.stores.media_store import MediaRecord, media_uri
from serving.deps import CurrentUser, MediaStoreDep, MediaUploadsDep, SettingsDep
from serving.ids import new_media_id
from serving.models import MediaCreate, MediaUpload
from serving.problems import ApiProblem
from serving.responses import PROBLEMS, JsonResponse, problem_doc

router = APIRouter(prefix="/v1/media", tags=["media"])


@router.post("", status_code=201, response_model=MediaUpload,
             responses={**PROBLEMS, 413: problem_doc("The request body is too large.")},
             summary="Announce an upload")
async def create_media(body: MediaCreate, user: CurrentUser, settings: SettingsDep,
                       media: MediaStoreDep, media_uploads: MediaUploadsDep) -> Response:
    """Get a signed URL to upload one photo or video.

    PUT exactly `bytes` bytes to `upload_url` with the `upload_headers` before it expires,
    then reference `media_id` in `POST /v1/posts`.
    """
    api = settings.api
    if body.bytes > api.media_max_bytes:
        detail = f"at most {api.media_max_bytes} bytes"
        raise ApiProblem(422, "validation-error", f"body bytes: {detail}",
                         title="Request validation failed",
                         errors=[{"location": "body", "field": "bytes", "message": detail}])
    media_id = new_media_id()
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
