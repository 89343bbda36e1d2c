"""GET /docs: Swagger UI from the pinned package, served by us, under a CSP that allows this origin only."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from tests.builders.app import build_app
from tests.fakes import FakeStore


class References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.inline_script = ""
        self.in_script = False
        self.spec_url: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.urls += [value for name, value in attrs if name in ("src", "href") and value is not None]
        if tag == "script":
            self.scripts.append(found)
            self.in_script = True
        self.spec_url = found.get("data-spec-url") or self.spec_url

    def handle_endtag(self, tag: str) -> None:
        self.in_script = self.in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self.in_script:
            self.inline_script += data.strip()


@pytest.fixture
def client():
    return build_app(FakeStore()).test_client()


@pytest.fixture
def page(client) -> References:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    parsed = References()
    parsed.feed(response.get_data(as_text=True))
    return parsed


def directives(policy: str) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}


def test_the_docs_page_references_no_other_host_and_no_inline_script(client, page):
    html = client.get("/docs").get_data(as_text=True)

    assert "http://" not in html and "https://" not in html
    assert page.urls and all(url.startswith("/") and not url.startswith("//") for url in page.urls)
    assert [script.get("src") for script in page.scripts] == [
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/init.js",
    ]
    assert page.inline_script == ""


def test_the_docs_page_has_a_csp_that_allows_this_origin_only(client):
    response = client.get("/docs")

    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "data:"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert not any("http" in source or "*" in source for sources in policy.values() for source in sources)
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("url", "mimetype", "marker"),
    [
        ("/docs/assets/swagger-ui-bundle.js", "text/javascript", b"SwaggerUIBundle"),
        ("/docs/assets/swagger-ui.css", "text/css", b".swagger-ui"),
        ("/docs/assets/favicon-32x32.png", "image/png", b"\x89PNG"),
        ("/docs/assets/init.js", "text/javascript", b"SwaggerUIBundle("),
    ],
)
def test_each_asset_is_served_with_its_content_type(client, page, url, mimetype, marker):
    response = client.get(url)

    assert url in page.urls
    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert marker in response.get_data()
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    response.close()


def test_the_start_up_script_loads_our_spec_and_asks_no_online_validator(client, page):
    init = client.get("/docs/assets/init.js").get_data(as_text=True)

    assert "validatorUrl: null" in init
    assert page.spec_url == "/openapi.json"
    assert client.get(page.spec_url).get_json()["info"]["title"] == "Hairfluencer try-on API"


@pytest.mark.parametrize(
    "name", ["index.html", "swagger-initializer.js", "oauth2-redirect.html", "..%2f__init__.py", "nothing.js"]
)
def test_only_the_pages_own_assets_are_served(client, name):
    assert client.get(f"/docs/assets/{name}").status_code == 404
