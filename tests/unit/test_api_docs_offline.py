"""/docs and /redoc reference nothing but the app's own URLs, and the app serves them all.

The rendering itself is checked in a real browser by
tests/integration/test_api_docs_browser.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
from starlette.testclient import TestClient

from serving.main import create_app
from tests.support.unreachable import UNREACHABLE

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

PAGES = ("/docs", "/redoc")
#: The content type of each asset, by file name suffix.
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


class _References(HTMLParser):
    """The URLs a page loads: script sources, linked style sheets and icons, images."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "img": "src", "link": "href"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


def references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    return parser.urls


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(UNREACHABLE)) as c:
        yield c


@pytest.mark.parametrize("page", PAGES)
def test_page_names_no_other_host(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "http://" not in response.text and "https://" not in response.text
    assert "fonts.googleapis" not in response.text
    urls = references(response.text)
    assert len(urls) >= 2  # a script and the favicon at least
    for url in urls:
        assert url.startswith("/docs/assets/"), url
    assert "/openapi.json" in response.text


@pytest.mark.parametrize("page", PAGES)
def test_every_referenced_asset_is_served(client: TestClient, page: str) -> None:
    for url in references(client.get(page).text):
        asset = client.get(url)
        assert asset.status_code == 200, url
        suffix = url[url.rindex("."):]
        assert asset.headers["content-type"].startswith(CONTENT_TYPES[suffix]), url
        assert len(asset.content) > 1000, url


def test_the_scripts_are_swagger_ui_and_redoc(client: TestClient) -> None:
    swagger = [u for u in references(client.get("/docs").text) if u.endswith(".js")]
    redoc = [u for u in references(client.get("/redoc").text) if u.endswith(".js")]
    assert len(swagger) == 1 and len(redoc) == 1
    assert "SwaggerUIBundle" in client.get(swagger[0]).text
    assert "Redoc" in client.get(redoc[0]).text


def test_swagger_ui_fetches_no_validator_badge(client: TestClient) -> None:
    html = client.get("/docs").text
    assert '"validatorUrl": null' in html
    assert "oauth2RedirectUrl" not in html  # no OAuth2 here, so no redirect page to point at


@pytest.mark.parametrize("page", PAGES)
def test_the_browser_is_told_to_load_only_from_the_app(client: TestClient, page: str) -> None:
    policy = client.get(page).headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    for name, sources in directives.items():
        for source in sources.split():
            assert source in {"'none'", "'self'", "'unsafe-inline'", "data:", "blob:"}, (
                name, source)


def test_a_missing_asset_is_404(client: TestClient) -> None:
    assert client.get("/docs/assets/no-such-file.js").status_code == 404


def test_urls_follow_the_root_path_behind_a_proxy() -> None:
    with TestClient(create_app(UNREACHABLE), root_path="/api") as c:
        for page in PAGES:
            html = c.get(page).text
            assert "/api/openapi.json" in html
            for url in references(html):
                assert url.startswith("/api/docs/assets/"), url
                assert c.get(url).status_code == 200, url


def test_the_framework_pages_are_off() -> None:
    """Only our offline pages: no second docs route from FastAPI's defaults."""
    paths = [getattr(route, "path", None) for route in create_app(UNREACHABLE).routes]
    assert paths.count("/docs") == 1 and paths.count("/redoc") == 1
    assert "/docs/oauth2-redirect" not in paths
