"""The lifecycle documents `tryon provision` writes: what each backstop matches, and when."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from adapters.s3_provisioning.documents import (
    EXPIRING,
    EXPIRING_TAGGING,
    FAVORITE,
    RETENTION_TAG,
    SOURCES_BACKSTOP_DAYS,
    lifecycle_rules,
    normalize_lifecycle,
)
from entrypoints.settings import Settings

DAY = 86400


def uploads_rules() -> dict[str, dict[str, Any]]:
    return {rule["ID"]: rule for rule in lifecycle_rules("uploads", processed_retention_days=30)}


def test_the_uploads_bucket_expires_client_puts_after_a_day_and_unheld_sources_after_two():
    rules = uploads_rules()

    assert set(rules) == {"expire-uploads", "expire-sources-not-held"}
    assert rules["expire-uploads"]["Filter"] == {"Prefix": "uploads/"}
    assert rules["expire-uploads"]["Expiration"] == {"Days": 1}
    assert rules["expire-sources-not-held"] == {
        "ID": "expire-sources-not-held",
        "Status": "Enabled",
        "Filter": {"And": {"Prefix": "sources/", "Tags": [{"Key": "retention", "Value": "expiring"}]}},
        "Expiration": {"Days": 2},
    }
    assert SOURCES_BACKSTOP_DAYS == 2


def test_the_sources_rule_matches_the_tag_sources_are_written_with_and_not_a_favourites_tag():
    (tag,) = uploads_rules()["expire-sources-not-held"]["Filter"]["And"]["Tags"]

    assert parse_qs(EXPIRING_TAGGING) == {tag["Key"]: [tag["Value"]]}
    assert (tag["Key"], tag["Value"]) == (RETENTION_TAG, EXPIRING)
    assert tag["Value"] != FAVORITE


def test_a_rule_filtering_on_tags_does_not_also_abort_multipart_uploads():
    """S3 refuses AbortIncompleteMultipartUpload in a rule whose filter has tags."""
    for role in ("uploads", "processed"):
        for rule in lifecycle_rules(role, processed_retention_days=30):
            filt = rule["Filter"]
            if "Tag" in filt or "Tags" in filt.get("And", {}):
                assert "AbortIncompleteMultipartUpload" not in rule, rule["ID"]


def test_the_backstop_leaves_the_sweeper_a_day_beyond_the_longest_default_retention():
    """Lifecycle runs about daily: the backstop must never beat the service's own deletion."""
    defaults = Settings(uploads_bucket="u", processed_bucket="p", better_auth_url="https://auth.example.com")
    longest = max(defaults.source_retention_seconds, defaults.unused_upload_ttl_seconds)

    assert longest + DAY <= SOURCES_BACKSTOP_DAYS * DAY


def test_the_sources_rule_as_s3_echoes_it_back_compares_equal():
    wanted = lifecycle_rules("uploads", processed_retention_days=30)
    echoed = [dict(rule) for rule in reversed(wanted)]
    for rule in echoed:
        if rule["ID"] == "expire-sources-not-held":
            rule["Filter"] = {
                "And": {
                    "Prefix": "sources/",
                    "Tags": [{"Key": "retention", "Value": "expiring"}],
                    "ObjectSizeGreaterThan": 0,
                }
            }

    assert normalize_lifecycle(echoed) == normalize_lifecycle(wanted)


def test_a_sources_rule_of_another_age_or_tag_is_a_change():
    wanted = lifecycle_rules("uploads", processed_retention_days=30)
    older = [
        dict(rule, Expiration={"Days": 30}) if rule["ID"] == "expire-sources-not-held" else rule
        for rule in wanted
    ]
    untagged = [
        dict(rule, Filter={"Prefix": "sources/"}) if rule["ID"] == "expire-sources-not-held" else rule
        for rule in wanted
    ]

    assert normalize_lifecycle(older) != normalize_lifecycle(wanted)
    assert normalize_lifecycle(untagged) != normalize_lifecycle(wanted)
