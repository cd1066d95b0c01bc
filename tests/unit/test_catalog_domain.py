"""The catalog's pure rules: what a listing changes, and when a model may be switched."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from services.catalog.domain import (
    MAX_REASON_LENGTH,
    CatalogDiff,
    KnownModel,
    OfferedModel,
    Switch,
    decide_switch,
    diff_models,
    failure_reason,
    is_superseded,
    model_name,
)


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

    assert [(c.model, c.owned_by) for c in diff.owner_changed] == [(model, "acme-labs")]
    assert not (diff.discovered or diff.reappeared or diff.retired)


def test_an_owner_that_disappears_is_an_update_to_none() -> None:
    """A provider that stops naming an owner changes owned_by to None."""
    model = _known("gpt-a", "acme")

    diff = diff_models([model], [OfferedModel("gpt-a", None)])

    assert [(c.model, c.owned_by) for c in diff.owner_changed] == [(model, None)]


def test_a_retired_model_offered_again_reappears_under_its_id() -> None:
    """A retired model back in the listing is a reappearance of the known model, not a new one."""
    model = _known("gpt-a", retired=True)
    offer = OfferedModel("gpt-a", "acme")

    diff = diff_models([model], [offer])

    assert [(r.model, r.offered) for r in diff.reappeared] == [(model, offer)]
    assert not (diff.discovered or diff.owner_changed or diff.retired)


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
    assert [(c.model, c.owned_by) for c in diff.owner_changed] == [(changed, "new-owner")]
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
