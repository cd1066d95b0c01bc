"""The catalog's pure rules: what a listing changes, and when a model may be switched."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from services.catalog.domain import (
    MAX_REASON_LENGTH,
    CatalogDiff,
    InvalidPolicy,
    KnownModel,
    ModelDetails,
    NewModelAction,
    NewModelPolicy,
    OfferedModel,
    Price,
    Switch,
    decide_switch,
    diff_models,
    failure_reason,
    is_superseded,
    model_name,
    new_model_policy,
)
from services.catalog.schedule import SyncSchedule


def _known(upstream_id: str, owned_by: str | None = "acme", *, retired: bool = False) -> KnownModel:
    return KnownModel(
        id=secrets.token_hex(8), upstream_id=upstream_id, owned_by=owned_by, retired=retired
    )


def test_models_offered_for_the_first_time_are_discovered_in_listing_order() -> None:
    """An empty catalog discovers every offered model, in the provider's order."""
    offered = [OfferedModel("gpt-b", "acme"), OfferedModel("gpt-a", None)]

    diff = diff_models([], offered)

    assert diff == CatalogDiff(discovered=tuple(offered))


def test_unchanged_listing_changes_nothing() -> None:
    """A listing equal to what is known yields an empty diff, so a resync says nothing."""
    known = [_known("gpt-a"), _known("gpt-b", None)]
    offered = [OfferedModel("gpt-b", None), OfferedModel("gpt-a", "acme")]

    diff = diff_models(known, offered)

    assert diff.is_empty


def test_models_gone_upstream_are_retired() -> None:
    """A known model missing from the listing is retired; the rest are left alone."""
    kept, gone = _known("gpt-a"), _known("gpt-old")

    diff = diff_models([kept, gone], [OfferedModel("gpt-a", "acme")])

    assert diff == CatalogDiff(retired=(gone,))


def test_an_already_retired_model_is_not_retired_again() -> None:
    """A retired model still absent upstream produces no second retirement."""
    diff = diff_models([_known("gpt-old", retired=True)], [])

    assert diff.is_empty


def test_a_changed_owner_is_an_update() -> None:
    """A model whose owned_by differs from the record is reported with its new owner."""
    model = _known("gpt-a", "acme")

    diff = diff_models([model], [OfferedModel("gpt-a", "acme-labs")])

    assert [(c.model, c.offered.owned_by) for c in diff.changed] == [(model, "acme-labs")]
    assert not (diff.discovered or diff.reappeared or diff.retired)


def test_an_owner_that_disappears_is_an_update_to_none() -> None:
    """A provider that stops naming an owner changes owned_by to None."""
    model = _known("gpt-a", "acme")

    diff = diff_models([model], [OfferedModel("gpt-a", None)])

    assert [(c.model, c.offered.owned_by) for c in diff.changed] == [(model, None)]


def test_a_retired_model_offered_again_reappears_under_its_id() -> None:
    """A retired model back in the listing is a reappearance of the known model, not a new one."""
    model = _known("gpt-a", retired=True)
    offer = OfferedModel("gpt-a", "acme")

    diff = diff_models([model], [offer])

    assert [(r.model, r.offered) for r in diff.reappeared] == [(model, offer)]
    assert not (diff.discovered or diff.changed or diff.retired)


def test_new_gone_unchanged_and_changed_at_once() -> None:
    """One listing can discover, update and retire while leaving other models untouched."""
    same, changed, gone = _known("same"), _known("changed", "old-owner"), _known("gone")
    offered = [
        OfferedModel("same", "acme"),
        OfferedModel("changed", "new-owner"),
        OfferedModel("new", "acme"),
    ]

    diff = diff_models([same, changed, gone], offered)

    assert diff.discovered == (OfferedModel("new", "acme"),)
    assert [(c.model, c.offered.owned_by) for c in diff.changed] == [(changed, "new-owner")]
    assert diff.retired == (gone,)
    assert diff.reappeared == ()


def test_an_id_listed_twice_counts_once() -> None:
    """A provider that repeats a model id across pages still has one model by that id."""
    diff = diff_models([], [OfferedModel("gpt-a", "first"), OfferedModel("gpt-a", "second")])

    assert diff.discovered == (OfferedModel("gpt-a", "first"),)


def test_model_name_joins_connection_and_upstream_id() -> None:
    """Members call a model by "<connection name>/<upstream id>"."""
    assert model_name("team-openai", "gpt-4o") == "team-openai/gpt-4o"


def test_switching_changes_only_a_different_state() -> None:
    """Enabling an enabled model or disabling a disabled one is no change."""
    assert decide_switch(enabled=False, retired=False, enable=True) is Switch.CHANGE
    assert decide_switch(enabled=True, retired=False, enable=False) is Switch.CHANGE
    assert decide_switch(enabled=True, retired=False, enable=True) is Switch.ALREADY
    assert decide_switch(enabled=False, retired=False, enable=False) is Switch.ALREADY


def test_a_retired_model_cannot_be_enabled_but_disabling_it_is_harmless() -> None:
    """Enabling a retired model is refused; disabling it (already off) changes nothing."""
    assert decide_switch(enabled=False, retired=True, enable=True) is Switch.RETIRED
    assert decide_switch(enabled=False, retired=True, enable=False) is Switch.ALREADY


def test_a_listing_fetched_before_the_last_recorded_sync_is_superseded() -> None:
    """Of two overlapping syncs, the one that started earlier must not be applied last."""
    now = datetime.now(UTC)

    assert is_superseded(now, now + timedelta(seconds=1))
    assert not is_superseded(now, now)
    assert not is_superseded(now, now - timedelta(seconds=1))
    assert not is_superseded(now, None)


def test_failure_reasons_are_one_short_line() -> None:
    """Reasons shown to admins are single-line and bounded in length."""
    assert failure_reason("provider\n  is   down") == "provider is down"
    long = failure_reason("x" * (MAX_REASON_LENGTH * 2))
    assert len(long) == MAX_REASON_LENGTH
    assert long.endswith("…")


def test_a_changed_description_is_an_update_and_an_equal_one_is_not() -> None:
    """A new price or context window is an update; the same description is no change."""
    details = ModelDetails(context_window=8000, price=Price(1.0, 2.0))
    model = KnownModel(secrets.token_hex(8), "gpt-a", "acme", retired=False, details=details)

    same = diff_models(
        [model],
        [OfferedModel("gpt-a", "acme", ModelDetails(context_window=8000, price=Price(1.0, 2.0)))],
    )
    repriced = diff_models(
        [model],
        [OfferedModel("gpt-a", "acme", ModelDetails(context_window=8000, price=Price(1.5, 2.0)))],
    )
    unpriced = diff_models(
        [model], [OfferedModel("gpt-a", "acme", ModelDetails(context_window=8000))]
    )

    assert same.is_empty
    assert [c.offered.details.price for c in repriced.changed] == [Price(1.5, 2.0)]
    assert [c.offered.details.price for c in unpriced.changed] == [None]


def test_capabilities_follow_modalities_and_tool_support() -> None:
    """Tools, vision, audio, image output and embeddings are read off the description."""
    details = ModelDetails(
        input_modalities=("text", "image", "audio"),
        output_modalities=("text", "image"),
        supports_tools=True,
    )

    assert details.capabilities == ("tools", "vision", "audio", "image_output")
    assert ModelDetails(output_modalities=("embedding",)).capabilities == ("embeddings",)
    assert ModelDetails(supports_tools=False).capabilities == ()


def test_a_new_model_policy_names_groups_only_for_group_grants() -> None:
    """Groups go with enable_for_groups and nothing else; repeats collapse."""
    assert new_model_policy("disabled", []) == NewModelPolicy()
    assert not NewModelPolicy().enables
    assert new_model_policy("enable_for_groups", ["g1", "g2", "g1"]) == NewModelPolicy(
        NewModelAction.ENABLE_FOR_GROUPS, ("g1", "g2")
    )
    assert new_model_policy("enable_for_workspace", []).enables
    with pytest.raises(InvalidPolicy):
        new_model_policy("enable_for_groups", [])
    with pytest.raises(InvalidPolicy):
        new_model_policy("enable_for_workspace", ["g1"])


def test_a_good_sync_waits_an_interval_spread_by_the_jitter() -> None:
    """After success the next sync is one interval away, give or take the jitter."""
    schedule = SyncSchedule(interval_seconds=3600, jitter=0.1)

    assert schedule.delay_seconds(0, 0.0) == 3600
    assert schedule.delay_seconds(0, -1.0) == pytest.approx(3240)
    assert schedule.delay_seconds(0, 1.0) == pytest.approx(3960)
    assert schedule.delay_seconds(0, 5.0) == pytest.approx(3960)


def test_failures_back_off_exponentially_up_to_the_cap() -> None:
    """Each failure in a row doubles the wait from the base, never beyond the cap."""
    schedule = SyncSchedule(jitter=0.0, retry_base_seconds=60, retry_max_seconds=900)

    waits = [schedule.delay_seconds(n, 0.0) for n in (1, 2, 3, 4, 5, 6, 1000)]

    assert waits == [60, 120, 240, 480, 900, 900, 900]
    now = datetime.now(UTC)
    assert schedule.next_sync_at(now, 2, 0.0) == now + timedelta(seconds=120)
