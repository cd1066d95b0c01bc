"""The proxy's access decision, applied to events as the stream delivers them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson

from services.proxy.errors import ANTHROPIC, OPENAI
from services.proxy.view import Refusal, Retired, Route, View
from shared.events import schemas as ev
from shared.events.envelope import Envelope


def rid() -> str:
    return str(uuid.uuid4())


class Workspace:
    """Builds a workspace in a view through events, as the producers would emit them."""

    def __init__(self, view: View) -> None:
        self.view = view
        self.id = rid()
        self.connection_id = rid()
        self.emit(
            ev.ProviderConnected(
                connection_id=self.connection_id,
                provider="openai-compatible",
                connection_name="local",
                base_url="http://127.0.0.1:9/v1",
                masked_key="sk-…abcd",
                fingerprint="hmac-sha256:00",
            )
        )

    def emit(self, data: ev.EventData) -> None:
        self.view.apply(
            Envelope(
                source="/test",
                type=data.event_type(),
                subject="s",
                data=data.model_dump(mode="json"),
                workspaceid=self.id,
                streamid="s",
                streamversion=1,
            )
        )

    def member(self, role: str = "member", expires_at: datetime | None = None) -> tuple[str, str]:
        user_id, token_id, digest = rid(), rid(), uuid.uuid4().hex
        self.emit(ev.MemberAdded(user_id=user_id, role=role))  # type: ignore[arg-type]
        self.emit(
            ev.TokenIssued(
                token_id=token_id,
                user_id=user_id,
                token_hash=digest,
                token_prefix="byom_x",
                token_name="t",
                expires_at=expires_at,
            )
        )
        return user_id, digest

    def model(self, name: str, *, enabled: bool = True) -> str:
        model_id = rid()
        self.emit(
            ev.ModelDiscovered(
                model_id=model_id,
                connection_id=self.connection_id,
                model_name=name,
                upstream_id=name.split("/", 1)[1],
                provider="openai-compatible",
            )
        )
        if enabled:
            self.emit(ev.ModelEnabled(model_id=model_id, connection_id=self.connection_id))
        return model_id

    def grant(self, model_id: str, kind: str, principal_id: str) -> str:
        rule_id = rid()
        self.emit(
            ev.AccessGranted(
                rule_id=rule_id,
                model_id=model_id,
                principal_kind=kind,
                principal_id=principal_id,  # type: ignore[arg-type]
            )
        )
        return rule_id

    def revoke(self, rule_id: str, model_id: str, kind: str, principal_id: str) -> None:
        self.emit(
            ev.AccessRevoked(
                rule_id=rule_id,
                model_id=model_id,
                principal_kind=kind,
                principal_id=principal_id,  # type: ignore[arg-type]
            )
        )


def decide(view: View, digest: str, model: str) -> Route | Refusal | Retired | None:
    caller = view.authenticate(digest)
    return None if caller is None else view.route(caller, model)


def test_rules_add_up_and_removing_one_takes_only_its_share() -> None:
    """A model for everyone, plus Marketing, plus one person; dropping the workspace rule leaves the other two."""
    view = View()
    ws = Workspace(view)
    marketer, marketer_token = ws.member()
    named, named_token = ws.member()
    _, other_token = ws.member()
    marketing = rid()
    ws.emit(ev.GroupCreated(group_id=marketing, group_name="Marketing"))
    ws.emit(ev.GroupMemberAdded(group_id=marketing, user_id=marketer))
    model = ws.model("local/gpt-a")
    everyone = ws.grant(model, "workspace", ws.id)
    ws.grant(model, "group", marketing)
    ws.grant(model, "user", named)

    for token in (marketer_token, named_token, other_token):
        assert isinstance(decide(view, token, "local/gpt-a"), Route)

    ws.revoke(everyone, model, "workspace", ws.id)

    assert isinstance(decide(view, marketer_token, "local/gpt-a"), Route)
    assert isinstance(decide(view, named_token, "local/gpt-a"), Route)
    assert decide(view, other_token, "local/gpt-a") is Refusal.NOT_GRANTED


def test_two_rules_for_one_group_survive_the_removal_of_one() -> None:
    """Granting a group twice and revoking once keeps the group's access."""
    view = View()
    ws = Workspace(view)
    user, token = ws.member()
    group = rid()
    ws.emit(ev.GroupMemberAdded(group_id=group, user_id=user))
    model = ws.model("local/gpt-a")
    first = ws.grant(model, "group", group)
    ws.grant(model, "group", group)

    ws.revoke(first, model, "group", group)
    ws.revoke(first, model, "group", group)  # a redelivered revocation changes nothing more

    assert isinstance(decide(view, token, "local/gpt-a"), Route)


def test_leaving_the_group_takes_the_group_grant_away() -> None:
    """A member removed from a group loses what only that group gave."""
    view = View()
    ws = Workspace(view)
    user, token = ws.member()
    group = rid()
    ws.emit(ev.GroupMemberAdded(group_id=group, user_id=user))
    model = ws.model("local/gpt-a")
    ws.grant(model, "group", group)

    ws.emit(ev.GroupMemberRemoved(group_id=group, user_id=user))

    assert decide(view, token, "local/gpt-a") is Refusal.NOT_GRANTED


def test_refusals_name_what_is_missing() -> None:
    """Unknown, disabled, retired, and disconnected models are refused for their own reason."""
    view = View()
    ws = Workspace(view)
    user, token = ws.member()
    disabled = ws.model("local/off", enabled=False)
    retired = ws.model("local/old")
    ws.grant(disabled, "user", user)
    ws.grant(retired, "user", user)
    ws.emit(ev.ModelRetired(model_id=retired, connection_id=ws.connection_id))

    assert decide(view, token, "local/none") is Refusal.UNKNOWN_MODEL
    assert decide(view, token, "local/off") is Refusal.MODEL_DISABLED
    assert decide(view, token, "local/old") == Retired(successor=None)

    live = ws.model("local/live")
    ws.grant(live, "user", user)
    ws.emit(ev.ProviderDisconnected(connection_id=ws.connection_id))
    assert decide(view, token, "local/live") is Refusal.CONNECTION_INACTIVE


def test_model_names_are_matched_exactly() -> None:
    """No case, prefix, or suffix variant of a granted model's name reaches it."""
    view = View()
    ws = Workspace(view)
    _, token = ws.member()
    model = ws.model("local/gpt-a")
    ws.grant(model, "workspace", ws.id)

    for variant in ("LOCAL/gpt-a", "local/GPT-A", "local/gpt-", "gpt-a", "local/gpt-a ", "local/*"):
        assert decide(view, token, variant) is Refusal.UNKNOWN_MODEL


def test_tokens_stop_working_when_revoked_expired_or_their_member_leaves() -> None:
    """Revoked and expired tokens, and tokens of deactivated members, authenticate nobody."""
    view = View()
    ws = Workspace(view)
    _, live = ws.member()
    assert view.authenticate(live) is not None

    _, expired = ws.member(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert view.authenticate(expired) is None

    user, revoked = ws.member()
    token_id = view.tokens[revoked].token_id
    ws.emit(ev.TokenRevoked(token_id=token_id, user_id=user))
    assert view.authenticate(revoked) is None

    leaver, token = ws.member()
    ws.emit(ev.MemberDeactivated(user_id=leaver))
    assert view.authenticate(token) is None


def test_workspaces_do_not_see_each_others_models() -> None:
    """The same model name in two workspaces resolves only within the caller's own."""
    view = View()
    first, second = Workspace(view), Workspace(view)
    _, token = first.member()
    theirs = second.model("local/gpt-a")
    second.grant(theirs, "workspace", second.id)

    assert decide(view, token, "local/gpt-a") is Refusal.UNKNOWN_MODEL
    caller = view.authenticate(token)
    assert caller is not None
    assert view.usable_models(caller) == []


def priced(input_price: float = 1.0) -> ev.ModelDetails:
    return ev.ModelDetails(price=ev.ModelPrice(input=input_price, output=2.0))


def test_a_retired_model_is_refused_naming_its_successor_in_both_dialects() -> None:
    """The refusal of a retired model is a 404 model_retired that names the successor given."""
    view = View()
    ws = Workspace(view)
    user, token = ws.member()
    old = ws.model("local/old")
    ws.grant(old, "user", user)
    ws.emit(ev.ModelRetired(model_id=old, connection_id=ws.connection_id, successor="local/new"))

    refusal = decide(view, token, "local/old")

    assert refusal == Retired(successor="local/new")
    assert isinstance(refusal, Retired)
    openai = OPENAI.refused(refusal, "local/old")
    anthropic = ANTHROPIC.refused(refusal, "local/old")
    assert (openai.status_code, anthropic.status_code) == (404, 404)
    error = orjson.loads(openai.body)["error"]
    assert error["code"] == "model_retired"
    assert "retired" in error["message"] and "'local/new'" in error["message"]
    anthropic_error = orjson.loads(anthropic.body)["error"]
    assert anthropic_error["type"] == "not_found_error"
    assert "'local/new'" in anthropic_error["message"]
    no_successor = orjson.loads(OPENAI.refused(Retired(), "local/old").body)["error"]
    assert "no successor" in no_successor["message"]


def test_unpriced_models_are_refused_only_where_the_workspace_says_so() -> None:
    """A model without a price is callable until the workspace disallows unpriced models."""
    view = View()
    ws = Workspace(view)
    user, token = ws.member()
    unpriced = ws.model("local/unpriced")
    ws.grant(unpriced, "user", user)
    with_price = rid()
    ws.emit(
        ev.ModelDiscovered(
            model_id=with_price,
            connection_id=ws.connection_id,
            model_name="local/priced",
            upstream_id="priced",
            provider="openai-compatible",
            details=priced(),
        )
    )
    ws.emit(ev.ModelEnabled(model_id=with_price, connection_id=ws.connection_id))
    ws.grant(with_price, "user", user)
    assert isinstance(decide(view, token, "local/unpriced"), Route)

    ws.emit(ev.WorkspaceSettingsChanged(allow_unpriced_models=False))

    assert decide(view, token, "local/unpriced") is Refusal.PRICE_UNKNOWN
    assert isinstance(decide(view, token, "local/priced"), Route)
    refused = OPENAI.refused(Refusal.PRICE_UNKNOWN, "local/unpriced")
    assert refused.status_code == 403
    assert orjson.loads(refused.body)["error"]["code"] == "model_price_unknown"

    ws.emit(ev.ModelUpdated(model_id=unpriced, connection_id=ws.connection_id, details=priced(3.0)))
    assert isinstance(decide(view, token, "local/unpriced"), Route)
    ws.emit(ev.ModelUpdated(model_id=unpriced, connection_id=ws.connection_id))
    assert isinstance(decide(view, token, "local/unpriced"), Route)
    ws.emit(
        ev.ModelUpdated(
            model_id=unpriced, connection_id=ws.connection_id, details=ev.ModelDetails()
        )
    )
    assert decide(view, token, "local/unpriced") is Refusal.PRICE_UNKNOWN

    ws.emit(ev.WorkspaceSettingsChanged(allow_unpriced_models=True))
    assert isinstance(decide(view, token, "local/unpriced"), Route)


def test_a_member_without_access_is_told_not_granted_before_anything_about_price() -> None:
    """The price check comes after the grant check, so it reveals nothing to outsiders."""
    view = View()
    ws = Workspace(view)
    _, token = ws.member()
    ws.model("local/unpriced")
    ws.emit(ev.WorkspaceSettingsChanged(allow_unpriced_models=False))

    assert decide(view, token, "local/unpriced") is Refusal.NOT_GRANTED
