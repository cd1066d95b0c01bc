"""Adapter for Amazon Bedrock with a Bedrock API key: Converse, ConverseStream, model listing.

A Bedrock API key is sent as ``Authorization: Bearer <key>``; no SigV4 signing. The
region is part of ``Endpoint.base_url``, the runtime endpoint
``https://bedrock-runtime.<region>.amazonaws.com`` (see :func:`runtime_url`). Listing goes
to the control plane of the same region (``bedrock.<region>…``), derived from that URL;
a base URL that is not an AWS host (a private gateway, the test emulator) serves both.

Listing is ``ListFoundationModels`` (one page: on-demand models with text output) plus
``ListInferenceProfiles`` (paged with ``maxResults``/``nextToken``), since newer models are
invoked only through an inference profile id such as ``us.anthropic.claude-…``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import orjson

from shared.providers import bedrock_wire, failures
from shared.providers.base import (
    ChatUpstreamRequest,
    Door,
    Endpoint,
    UpstreamFailure,
    UpstreamModel,
    Usage,
)
from shared.providers.bedrock_wire import ConverseStreamDecoder
from shared.providers.http import Page, ProviderHttp, Query, follow_pages
from shared.providers.openai_compatible import auth_headers, base_url
from shared.secrets import ProviderKey

DEFAULT_REGION: Final = "us-east-1"
_PROFILE_PAGE: Final = 100


def runtime_url(region: str) -> str:
    """The Bedrock runtime endpoint of a region: a connection's base URL."""
    return f"https://bedrock-runtime.{region}.amazonaws.com"


def control_plane_url(runtime: str) -> str:
    """``bedrock.<region>…`` for ``bedrock-runtime.<region>…``; any other URL as it is."""
    parts = urlsplit(runtime.rstrip("/"))
    host = parts.hostname or ""
    first, dot, rest = host.partition(".")
    if not first.startswith("bedrock-runtime") or not rest.endswith("amazonaws.com"):
        return runtime.rstrip("/")

    control_host = first.replace("bedrock-runtime", "bedrock", 1) + dot + rest
    netloc = control_host if parts.port is None else f"{control_host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _read_error(content: bytes) -> tuple[str | None, str]:
    return None, bedrock_wire.error_message(content)


class BedrockAdapter:
    """Checks keys, lists models and carries chat calls through Bedrock's Converse API."""

    def __init__(self, kind: str = "bedrock") -> None:
        self.kind = kind
        self.native_doors: frozenset[Door] = frozenset()
        self._http = ProviderHttp(kind, _read_error)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r})"

    async def verify_key(
        self, client: httpx.AsyncClient, endpoint: Endpoint, key: ProviderKey
    ) -> None:
        await self._foundation_models(client, endpoint, key)

    async def list_models(
        self, client: httpx.AsyncClient, endpoint: Endpoint, key: ProviderKey
    ) -> list[UpstreamModel]:
        """On-demand text models, then every active inference profile, page by page."""
        models = [
            UpstreamModel(id=entry["modelId"], owned_by=entry.get("providerName"), raw=entry)
            for entry in await self._foundation_models(client, endpoint, key)
            if _on_demand_text(entry)
        ]
        models.extend(await self._inference_profiles(client, endpoint, key))
        return models

    def chat_request(
        self, endpoint: Endpoint, key: ProviderKey, body: dict[str, Any]
    ) -> ChatUpstreamRequest:
        request = bedrock_wire.converse_request(body)
        # Model ids hold ':' ("…-v1:0") and profile ARNs hold '/': both are escaped.
        model = quote(str(body["model"]), safe="")
        action = "converse-stream" if body.get("stream") else "converse"
        headers = {**auth_headers(key), "Content-Type": "application/json"}
        if body.get("stream"):
            headers["Accept"] = "application/vnd.amazon.eventstream"
        return ChatUpstreamRequest(
            url=f"{base_url(endpoint)}/model/{model}/{action}",
            headers=headers,
            body=orjson.dumps(request),
        )

    def native_request(
        self,
        endpoint: Endpoint,
        key: ProviderKey,
        door: Door,
        body: bytes,
        headers: Mapping[str, str],
    ) -> ChatUpstreamRequest:
        raise LookupError(f"{self.kind} does not speak {door} natively")

    def response_to_openai(self, content: bytes, *, model: str) -> dict[str, Any]:
        payload = self._http.answer(content, "a Converse answer", needs=("output", dict))
        return bedrock_wire.response_to_openai(payload, model)

    def stream_decoder(self, *, model: str, key: ProviderKey) -> ConverseStreamDecoder:
        return ConverseStreamDecoder(model, key, self.kind)

    def error_from_response(
        self, status: int, content: bytes, headers: Mapping[str, str], key: ProviderKey
    ) -> UpstreamFailure:
        name = headers.get("x-amzn-errortype") or headers.get("x-amzn-ErrorType")
        _, category = bedrock_wire.exception_of(name, status)
        message = bedrock_wire.error_message(content)
        return failures.failure(self.kind, status, message, key, category=category, headers=headers)

    def usage_from_response(self, body: dict[str, Any]) -> Usage | None:
        return bedrock_wire.usage_of(body.get("usage"))

    def usage_from_stream_event(self, event: dict[str, Any]) -> Usage | None:
        return bedrock_wire.usage_of(event.get("usage"))

    async def _foundation_models(
        self, client: httpx.AsyncClient, endpoint: Endpoint, key: ProviderKey
    ) -> list[dict[str, Any]]:
        response = await self._http.get(
            client,
            f"{control_plane_url(endpoint.base_url)}/foundation-models",
            key=key,
            headers=auth_headers(key),
            params={"byOutputModality": "TEXT"},
            call="GET /foundation-models",
        )
        payload = self._http.json(response, "a model list")
        summaries = payload.get("modelSummaries") if isinstance(payload, dict) else None
        if not isinstance(summaries, list) or not all(
            isinstance(s, dict) and isinstance(s.get("modelId"), str) for s in summaries
        ):
            raise self._http.unexpected("a model list without 'modelSummaries' with 'modelId'")

        return summaries

    async def _inference_profiles(
        self, client: httpx.AsyncClient, endpoint: Endpoint, key: ProviderKey
    ) -> list[UpstreamModel]:
        def following(page: Page) -> Query | None:
            token = page.get("nextToken")
            if not token:
                return None

            if not isinstance(token, str):
                raise self._http.unexpected("an inference profile page token that is not a string")

            return {"maxResults": _PROFILE_PAGE, "nextToken": token}

        pages = await follow_pages(
            self.kind,
            lambda query: self._profile_page(client, endpoint, key, query),
            {"maxResults": _PROFILE_PAGE},
            following,
            what="inference profiles",
        )
        return [
            UpstreamModel(id=entry["inferenceProfileId"], owned_by=_vendor(entry), raw=entry)
            for page in pages
            for entry in page["inferenceProfileSummaries"]
            if entry.get("status", "ACTIVE") == "ACTIVE"
        ]

    async def _profile_page(
        self,
        client: httpx.AsyncClient,
        endpoint: Endpoint,
        key: ProviderKey,
        params: dict[str, str | int],
    ) -> dict[str, Any]:
        response = await self._http.get(
            client,
            f"{control_plane_url(endpoint.base_url)}/inference-profiles",
            key=key,
            headers=auth_headers(key),
            params=params,
            call="GET /inference-profiles",
        )
        page = self._http.json(response, "a profile list")
        summaries = page.get("inferenceProfileSummaries") if isinstance(page, dict) else None
        if not isinstance(summaries, list) or not all(
            isinstance(s, dict) and isinstance(s.get("inferenceProfileId"), str) for s in summaries
        ):
            raise self._http.unexpected(
                "a profile list without 'inferenceProfileSummaries' with ids"
            )

        return dict(page)


def _on_demand_text(entry: dict[str, Any]) -> bool:
    inference = entry.get("inferenceTypesSupported") or ["ON_DEMAND"]
    output = entry.get("outputModalities") or ["TEXT"]
    return "ON_DEMAND" in inference and "TEXT" in output


def _vendor(profile: dict[str, Any]) -> str | None:
    # "us.anthropic.claude-…": the vendor is the label after the geography prefix.
    labels = str(profile.get("inferenceProfileId", "")).split(".")
    return labels[1] if len(labels) > 2 else None
