"""The interactive API documentation, served without internet access.

``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) load their scripts, style sheet and favicon
from the ``fastapi-offline`` package installed with the project, mounted at
:data:`ASSETS_URL`, instead of from a CDN. Nothing on either page comes from another host:
ReDoc's web fonts and Swagger UI's online validator badge are off, and a
Content-Security-Policy makes the browser refuse anything else.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

#: The package whose ``static/`` folder holds the Swagger UI and ReDoc bundles.
ASSETS_PACKAGE = "fastapi_offline"
#: Where the app serves that folder.
ASSETS_URL = "/docs/assets"
SWAGGER_UI_URL = "/docs"
REDOC_URL = "/redoc"

SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
REDOC_JS = "redoc.standalone.js"
FAVICON = "favicon.png"

#: Swagger UI settings on top of FastAPI's defaults: no badge fetched from the online validator.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}

#: The pages may load nothing from another origin. ReDoc links a logo on its CDN in every
#: sidebar (no option turns it off): the browser refuses it and ReDoc leaves the logo out.
#: Inline scripts and styles are allowed (the Swagger UI page starts from an inline script,
#: both UIs inject styles), and workers from blobs (ReDoc's search index runs in one).
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self' 'unsafe-inline'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "worker-src 'self' blob:",
    "base-uri 'none'",
    "form-action 'none'",
))


def install_docs(app: FastAPI) -> None:
    """Serve the bundled assets and the two documentation pages.

    Build ``app`` with ``docs_url=None, redoc_url=None``: FastAPI's own pages load from a CDN.
    """
    app.mount(ASSETS_URL, StaticFiles(packages=[(ASSETS_PACKAGE, "static")]),
              name="docs-assets")

    def urls(request: Request) -> tuple[str, str]:
        """The OpenAPI document's URL and the assets' base URL, behind any proxy prefix."""
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return f"{root}{app.openapi_url}", f"{root}{ASSETS_URL}"

    @app.get(SWAGGER_UI_URL, include_in_schema=False, response_class=HTMLResponse)
    async def swagger_ui(request: Request) -> HTMLResponse:
        openapi_url, assets = urls(request)
        return _local_only(get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{assets}/{SWAGGER_JS}", swagger_css_url=f"{assets}/{SWAGGER_CSS}",
            swagger_favicon_url=f"{assets}/{FAVICON}", oauth2_redirect_url=None,
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS))

    @app.get(REDOC_URL, include_in_schema=False, response_class=HTMLResponse)
    async def redoc(request: Request) -> HTMLResponse:
        openapi_url, assets = urls(request)
        return _local_only(get_redoc_html(
            openapi_url=openapi_url, title=f"{app.title} - ReDoc",
            redoc_js_url=f"{assets}/{REDOC_JS}", redoc_favicon_url=f"{assets}/{FAVICON}",
            with_google_fonts=False))


def _local_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page
