"""How the proxy's view resolves what a caller names: exact model names, aliases, managed
models and the workspace's choice of sources."""

from __future__ import annotations

import orjson
import pytest

from services.proxy.errors import ANTHROPIC, OPENAI
from services.proxy.view import Refusal, Retired, Route, View
from shared.events import schemas as ev
from shared.events.envelope import Envelope
from tests.unit.test_proxy_view import Workspace, decide, rid


def managed(ws: Workspace, install_connection_id: str, name: str) -> str:
    """A managed entry in ``ws`` for an install model, enabled, as the catalog announces it."""
    model_id = rid()
    ws.emit(
        ev.ModelDiscovered(
            model_id=model_id,
            connection_id=install_connection_id,
            model_name=name,
            upstream_id=name.rsplit("/", 1)[1],
            provider="openai-compatible",
            source="managed",
        )
    )
    ws.emit(ev.ModelEnabled(model_id=model_id, connection_id=install_connection_id))
    return model_id


def apply_without_workspace(view: View, data: ev.EventData) -> None:
    """An event about the install itself: its envelope names no workspace."""
    view.apply(
        Envelope(
            source="/test",
            type=data.event_type(),
            subject="s",
            data=data.model_dump(mode="json"),
            streamid="s",
            streamversion=1,
        )
    )


def install_connection(view: View) -> str:
    """An operator's connection."""
    connection_id = rid()
    data = ev.ProviderConnected(
        connection_id=connection_id,
        provider="openai-compatible",
        connection_name="shared",
        base_url="http://127.0.0.1:9/v1",
        masked_key="sk-…abcd",
        fingerprint="hmac-sha256:00",
        scope="install",
    )
    apply_without_workspace(view, data)
    return connection_id


@pytest.mark.parametrize(
    "spelling",
    [
        "LOCAL/gpt-a",
        "local/GPT-A",
        "local/gpt-a ",
        " local/gpt-a",
        "local/gpt-a/",
        "local/gpt",
        "local/",
        "local",
        "gpt-a",
        "local/*",
        "*",
        "local/gpt-?",
        "local/../local/gpt-a",
        "./local/gpt-a",
        "local%2Fgpt-a",
        "local//gpt-a",
        "l\u043ecal/gpt-a",  # a Cyrillic o
        "local/gpt\u2010a",
        "local/gpt-a\x00",
        "DEFAULT",
        "default ",
    ],
)
def test_only_the_exact_name_or_alias_reaches_a_model(spelling: str) -> None:
    """No case change, padding, prefix, pattern, dot segment, encoding or look-alike matches."""
    view = View()
    ws = Workspace(view)
    user, token = ws.member()
    model = ws.model("local/gpt-a")
    ws.grant(model, "user", user)
    ws.emit(ev.AliasSet(alias="default", model_id=model, model_name="local/gpt-a"))

    assert isinstance(decide(view, token, "local/gpt-a"), Route)
    assert isinstance(decide(view, token, "default"), Route)
    assert decide(view, token, spelling) is Refusal.UNKNOWN_MODEL


def test_an_alias_follows_its_model_rules_and_can_be_repointed() -> None:
    """An alias grants nothing: the real model's rules decide; re-pointing changes the target."""
    view = View()
    ws = Workspace(view)
    user, token = ws.member()
    granted = ws.model("local/gpt-a")
    other = ws.model("local/gpt-b")
    ws.grant(granted, "user", user)

    ws.emit(ev.AliasSet(alias="cheap", model_id=other, model_name="local/gpt-b"))
    assert decide(view, token, "cheap") is Refusal.NOT_GRANTED
    caller = view.authenticate(token)
    assert caller is not None
    assert [name for name, _ in view.usable_names(caller)] == ["local/gpt-a"]

    ws.emit(ev.AliasSet(alias="cheap", model_id=granted, model_name="local/gpt-a"))
    route = decide(view, token, "cheap")
    assert isinstance(route, Route)
    assert (route.model.model_id, route.alias) == (granted, "cheap")
    assert [name for name, _ in view.usable_names(caller)] == ["cheap", "local/gpt-a"]

    ws.emit(ev.AliasRemoved(alias="cheap"))
    assert decide(view, token, "cheap") is Refusal.UNKNOWN_MODEL


def test_an_alias_of_a_retired_model_names_the_model_and_its_successor() -> None:
    view = View()
    ws = Workspace(view)
    _, token = ws.member()
    model = ws.model("local/gpt-old")
    ws.grant(model, "workspace", ws.id)
    ws.emit(ev.AliasSet(alias="default-chat", model_id=model, model_name="local/gpt-old"))
    ws.emit(
        ev.ModelRetired(model_id=model, connection_id=ws.connection_id, successor="local/gpt-new")
    )

    refusal = decide(view, token, "default-chat")
    assert refusal == Retired("local/gpt-new", alias_of="local/gpt-old")
    assert isinstance(refusal, Retired)
    for dialect in (OPENAI, ANTHROPIC):
        answer = dialect.refused(refusal, "default-chat")
        text = orjson.loads(answer.body)["error"]["message"]
        assert answer.status_code == 404
        assert "'default-chat' points at 'local/gpt-old'" in text and "local/gpt-new" in text


def test_an_alias_cannot_reach_another_workspaces_model() -> None:
    """Even an alias event naming a foreign model id resolves to nothing."""
    view = View()
    ours, theirs = Workspace(view), Workspace(view)
    _, token = ours.member()
    foreign = theirs.model("local/secret")
    theirs.grant(foreign, "workspace", theirs.id)
    ours.emit(ev.AliasSet(alias="sneaky", model_id=foreign, model_name="local/secret"))

    assert decide(view, token, "sneaky") is Refusal.UNKNOWN_MODEL


def test_managed_models_route_through_the_install_connection_and_follow_the_setting() -> None:
    view = View()
    ws = Workspace(view)
    _, token = ws.member()
    shared = install_connection(view)
    own = ws.model("local/gpt-a")
    offered = managed(ws, shared, "managed/shared/gpt-a")
    ws.grant(own, "workspace", ws.id)
    ws.grant(offered, "workspace", ws.id)

    route = decide(view, token, "managed/shared/gpt-a")
    assert isinstance(route, Route)
    assert (route.connection.connection_id, route.model.source) == (shared, "managed")
    assert isinstance(decide(view, token, "local/gpt-a"), Route)

    ws.emit(ev.WorkspaceSettingsChanged(model_sources="byom_only"))
    assert decide(view, token, "managed/shared/gpt-a") is Refusal.SOURCE_EXCLUDED
    assert isinstance(decide(view, token, "local/gpt-a"), Route)

    ws.emit(ev.WorkspaceSettingsChanged(model_sources="managed_only"))
    assert decide(view, token, "local/gpt-a") is Refusal.SOURCE_EXCLUDED
    assert isinstance(decide(view, token, "managed/shared/gpt-a"), Route)
    answer = ANTHROPIC.refused(Refusal.SOURCE_EXCLUDED, "local/gpt-a")
    assert answer.status_code == 403
    assert orjson.loads(answer.body)["error"]["type"] == "permission_error"

    ws.emit(ev.WorkspaceSettingsChanged(model_sources="both"))
    assert isinstance(decide(view, token, "local/gpt-a"), Route)


def test_a_withdrawn_managed_model_is_unknown_until_offered_again() -> None:
    view = View()
    ws = Workspace(view)
    _, token = ws.member()
    shared = install_connection(view)
    offered = managed(ws, shared, "managed/shared/gpt-a")
    ws.grant(offered, "workspace", ws.id)

    ws.emit(ev.ModelWithdrawn(model_id=offered, connection_id=shared))
    assert decide(view, token, "managed/shared/gpt-a") is Refusal.UNKNOWN_MODEL

    ws.emit(
        ev.ModelDiscovered(
            model_id=offered,
            connection_id=shared,
            model_name="managed/shared/gpt-a",
            upstream_id="gpt-a",
            provider="openai-compatible",
            source="managed",
        )
    )
    assert decide(view, token, "managed/shared/gpt-a") is Refusal.MODEL_DISABLED
    ws.emit(ev.ModelEnabled(model_id=offered, connection_id=shared))
    assert isinstance(decide(view, token, "managed/shared/gpt-a"), Route)


def test_the_install_models_themselves_belong_to_no_workspace() -> None:
    """The operator's own listing is not callable: only a workspace's offered entry is."""
    view = View()
    ws = Workspace(view)
    _, token = ws.member()
    shared = install_connection(view)
    data = ev.ModelDiscovered(
        model_id=rid(),
        connection_id=shared,
        model_name="managed/shared/gpt-a",
        upstream_id="gpt-a",
        provider="openai-compatible",
        source="managed",
    )
    apply_without_workspace(view, data)

    assert view.models == {}
    assert decide(view, token, "managed/shared/gpt-a") is Refusal.UNKNOWN_MODEL
