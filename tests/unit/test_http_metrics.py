"""GET /metrics is for the bearer of METRICS_TOKEN only; to anyone else it looks like any unknown URL. Every
request is counted by its route rule, never its path."""

from __future__ import annotations

import secrets
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from entrypoints.http.metrics import route_label
from tests.builders.app import AUTH, SETTINGS, assert_problem, build_app
from tests.fakes import FakeStore

TOKEN = "metrics-token-0123456789abcdef"


def scrape(token: str | None, headers: dict[str, str]):
    client = build_app(FakeStore(), settings=replace(SETTINGS, metrics_token=token)).test_client()
    return client.get("/metrics", headers=headers)


def test_the_bearer_of_the_metrics_token_gets_prometheus_text():
    response = scrape(TOKEN, {"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert "tryon_dependency_up" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": "Bearer token-user1"},  # a user's API token is not the operators'
    ],
    ids=["none", "longer", "shorter", "empty", "other-scheme", "no-scheme", "user-token"],
)
def test_without_the_right_token_metrics_answer_like_an_unknown_url(headers):
    response = scrape(TOKEN, headers)

    body = assert_problem(response, 404, "not_found")
    unknown = build_app(FakeStore()).test_client().get("/nothing-here", headers=headers)
    assert body == unknown.get_json()
    assert "tryon_" not in response.get_data(as_text=True)
    assert "WWW-Authenticate" not in response.headers


@pytest.mark.parametrize("token", [None, ""])
def test_with_no_token_configured_metrics_are_404_whatever_is_sent(token):
    assert_problem(scrape(token, {"Authorization": "Bearer "}), 404, "not_found")
    assert_problem(scrape(token, {"Authorization": "Bearer None"}), 404, "not_found")


def http_requests(text: str) -> dict[tuple[str, str, str], float]:
    return {
        (sample.labels["route"], sample.labels["method"], sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "tryon_http_requests"
        for sample in family.samples
        if sample.name == "tryon_http_requests_total"
    }


def test_requests_are_counted_by_their_route_rule_never_by_their_path():
    client = build_app(FakeStore(), settings=replace(SETTINGS, metrics_token=TOKEN)).test_client()
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    before = http_requests(client.get("/metrics", headers=bearer).get_data(as_text=True))
    hostile = f"/wp-admin/{secrets.token_hex(16)}"

    client.get(f"/v1/tryons/{secrets.token_hex(8)}", headers=AUTH)
    client.get(f"/v1/tryons/{secrets.token_hex(8)}", headers=AUTH)
    client.get(hostile)
    client.post("/healthz")  # no route for POST: 405, unmatched as well
    scraped = client.get("/metrics", headers=bearer).get_data(as_text=True)
    after = http_requests(scraped)

    changed = {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)}
    assert changed == {
        ("/v1/tryons/<tryon_id>", "GET", "404"): 2,
        ("unmatched", "GET", "404"): 1,
        ("unmatched", "POST", "405"): 1,
        ("/metrics", "GET", "200"): 1,  # the first scrape, counted once it was answered
    }
    assert hostile not in scraped
    assert 'tryon_http_request_duration_seconds_count{method="GET",route="/v1/tryons/<tryon_id>"}' in scraped


def test_a_route_label_drops_the_converters_of_its_rule():
    assert route_label("/v1/tryons/<string:tryon_id>") == "/v1/tryons/<tryon_id>"
    assert route_label("/v1/results/<result_id>/image") == "/v1/results/<result_id>/image"
    assert route_label("/healthz") == "/healthz"
