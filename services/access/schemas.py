"""The shapes of access's HTTP requests and answers (its OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from services.access.domain import (
    DirectoryEntry,
    GrantedModel,
    Grantee,
    Group,
    Member,
    Model,
    Permission,
    Rule,
    Token,
)
from services.access.handlers.members import NewWorkspace
from services.access.handlers.tokens import IssuedToken
from shared.events.schemas import ModelSources, PrincipalKind, Role

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Email = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=254)]

T = TypeVar("T")


class _Body(BaseModel):
    # A misspelt field is refused rather than silently ignored.
    model_config = ConfigDict(extra="forbid")


# requests


class CreateWorkspace(_Body):
    name: Name
    owner_email: Email
    owner_name: Name


class AddMember(_Body):
    email: Email
    display_name: Name
    role: Role = "member"


class ChangeRole(_Body):
    role: Role


class IssueToken(_Body):
    name: Name
    expires_at: AwareDatetime | None = None


class CreateGroup(_Body):
    name: Name


class GrantAccess(_Body):
    principal_kind: PrincipalKind
    principal_id: str | None = Field(default=None, max_length=36)


class ChangeWorkspaceSettings(_Body):
    # Left out: unchanged.
    allow_unpriced_models: bool | None = None
    model_sources: ModelSources | None = None


class Introspect(_Body):
    token_hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 hex of the token")


# answers


class Page(BaseModel, Generic[T]):
    data: list[T]


class WorkspaceOut(BaseModel):
    id: str
    name: str


class WorkspaceSettingsOut(BaseModel):
    # Whether members may call models whose price the catalog does not know. Such calls
    # are refused with a 403 at the proxy when this is false.
    allow_unpriced_models: bool
    # Which models members may call: the workspace's own connections' ("byom_only"), the
    # install operator's managed ones ("managed_only"), or both. Calls to a model of the
    # other kind are refused with a 403 at the proxy.
    model_sources: ModelSources


class OwnerOut(BaseModel):
    id: str
    email: str
    display_name: str
    role: Role


class InitialTokenOut(BaseModel):
    id: str
    name: str
    prefix: str
    token: str = Field(description="the token itself, shown this once")


class WorkspaceCreatedOut(BaseModel):
    workspace: WorkspaceOut
    owner: OwnerOut
    token: InitialTokenOut

    @classmethod
    def of(cls, created: NewWorkspace) -> WorkspaceCreatedOut:
        owner, token = created.owner, created.token.token
        return cls(
            workspace=WorkspaceOut(id=created.id, name=created.name),
            owner=OwnerOut(
                id=owner.id, email=owner.email, display_name=owner.display_name, role=owner.role
            ),
            token=InitialTokenOut(
                id=token.id,
                name=token.name,
                prefix=token.prefix,
                token=created.token.secret.reveal(),
            ),
        )


class MeOut(BaseModel):
    workspace_id: str
    user_id: str
    role: Role
    token_id: str
    email: str
    display_name: str


class MemberOut(BaseModel):
    id: str
    email: str
    display_name: str
    role: Role
    active: bool

    @classmethod
    def of(cls, member: Member) -> MemberOut:
        return cls(
            id=member.id,
            email=member.email,
            display_name=member.display_name,
            role=member.role,
            active=member.active,
        )


class TokenCreatedOut(BaseModel):
    id: str
    name: str
    prefix: str
    token: str = Field(description="the token itself, shown this once")
    expires_at: datetime | None

    @classmethod
    def of(cls, issued: IssuedToken) -> TokenCreatedOut:
        return cls(
            id=issued.token.id,
            name=issued.token.name,
            prefix=issued.token.prefix,
            token=issued.secret.reveal(),
            expires_at=issued.token.expires_at,
        )


class TokenOut(BaseModel):
    id: str
    user_id: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, token: Token) -> TokenOut:
        return cls(
            id=token.id,
            user_id=token.user_id,
            name=token.name,
            prefix=token.prefix,
            created_at=token.created_at,
            expires_at=token.expires_at,
            revoked_at=token.revoked_at,
        )


class GroupOut(BaseModel):
    id: str
    name: str

    @classmethod
    def of(cls, group: Group) -> GroupOut:
        return cls(id=group.id, name=group.name)


class RuleOut(BaseModel):
    id: str
    model_id: str
    principal_kind: PrincipalKind
    principal_id: str
    permission: Permission

    @classmethod
    def of(cls, rule: Rule) -> RuleOut:
        return cls(
            id=rule.id,
            model_id=rule.model_id,
            principal_kind=rule.principal_kind,
            principal_id=rule.principal_id,
            permission=rule.permission,
        )


class IntrospectionOut(BaseModel):
    workspace_id: str
    user_id: str
    role: str
    token_id: str


class DirectoryEntryOut(BaseModel):
    kind: Literal["user", "group"]
    id: str
    name: str = Field(description="a member's display name, or a group's name")
    email: str | None = Field(description="a member's email; null for a group")
    active: bool = Field(description="false for a deactivated member; groups are always true")

    @classmethod
    def of(cls, entry: DirectoryEntry) -> DirectoryEntryOut:
        return cls(
            kind=entry.kind, id=entry.id, name=entry.name, email=entry.email, active=entry.active
        )


class ModelOut(BaseModel):
    id: str
    name: str
    enabled: bool
    retired: bool

    @classmethod
    def of(cls, model: Model) -> ModelOut:
        return cls(id=model.id, name=model.name, enabled=model.enabled, retired=model.retired)


class GranteeOut(BaseModel):
    member: MemberOut
    rules: list[RuleOut] = Field(description="every rule that gives the model to this member")

    @classmethod
    def of(cls, grantee: Grantee) -> GranteeOut:
        return cls(
            member=MemberOut.of(grantee.member), rules=[RuleOut.of(r) for r in grantee.rules]
        )


class ModelGranteesOut(BaseModel):
    model: ModelOut
    data: list[GranteeOut]


class GrantedModelOut(BaseModel):
    model: ModelOut
    rules: list[RuleOut] = Field(description="every rule that gives this model to the member")

    @classmethod
    def of(cls, granted: GrantedModel) -> GrantedModelOut:
        return cls(model=ModelOut.of(granted.model), rules=[RuleOut.of(r) for r in granted.rules])


class MemberModelsOut(BaseModel):
    member: MemberOut
    data: list[GrantedModelOut]
