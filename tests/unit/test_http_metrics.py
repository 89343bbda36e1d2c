"""GET /metrics is for the bearer of METRICS_TOKEN only; to anyone else it looks like any unknown URL."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.builders.app import SETTINGS, assert_problem, build_app
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
