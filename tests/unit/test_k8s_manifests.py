"""The Kubernetes manifests under deploy/k8s keep the promises the deployment guide makes."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
BASE = K8S / "base"
SERVICES = ("access", "keyvault", "catalog", "proxy", "console")
INTERNAL_ROUTES = ("/access/internal/v1/introspect", "/keyvault/internal/v1/connections/x/key")
SETTINGS_DIR = "/var/run/secrets/byom"

Manifest = dict[str, Any]


def yaml_files(root: Path) -> list[Path]:
    return sorted([*root.rglob("*.yaml"), *root.rglob("*.yml")])


def documents(root: Path) -> Iterator[tuple[Path, Manifest]]:
    for path in yaml_files(root):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(document, dict):
                yield path, document


def objects(root: Path, kind: str) -> list[Manifest]:
    return [doc for _, doc in documents(root) if doc.get("kind") == kind]


def deployments() -> dict[str, Manifest]:
    found = {
        d["metadata"]["labels"]["app.kubernetes.io/name"]: d for d in objects(BASE, "Deployment")
    }
    assert sorted(found) == sorted(SERVICES)
    return found


def pod_spec(deployment: Manifest) -> Manifest:
    spec: Manifest = deployment["spec"]["template"]["spec"]
    return spec


def only_container(deployment: Manifest) -> Manifest:
    containers = pod_spec(deployment)["containers"]
    assert len(containers) == 1
    container: Manifest = containers[0]
    return container


def secret_names(volume: Manifest) -> set[str]:
    if "secret" in volume:
        return {volume["secret"]["secretName"]}

    sources = volume.get("projected", {}).get("sources", [])
    return {source["secret"]["name"] for source in sources if "secret" in source}


def mounted_secrets(deployment: Manifest) -> set[str]:
    names: set[str] = set()
    for volume in pod_spec(deployment).get("volumes", []):
        names |= secret_names(volume)
    return names


def labels_match(selector: Manifest, labels: Manifest) -> bool:
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


def test_every_yaml_file_parses() -> None:
    """Every YAML file under deploy/k8s is well-formed, multi-document files included."""
    files = yaml_files(K8S)
    assert files

    for path in files:
        list(yaml.safe_load_all(path.read_text(encoding="utf-8")))


def test_every_deployment_has_liveness_and_readiness_probes_on_its_health_routes() -> None:
    """Each service is probed for liveness at /<service>/healthz and readiness at /<service>/readyz."""
    for name, deployment in deployments().items():
        container = only_container(deployment)

        assert container["livenessProbe"]["httpGet"]["path"] == f"/{name}/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == f"/{name}/readyz"


def test_every_deployment_runs_locked_down() -> None:
    """Each pod runs as non-root on a read-only root filesystem, with no capabilities, seccomp RuntimeDefault and no API token."""
    for deployment in deployments().values():
        pod = pod_spec(deployment)
        container = only_container(deployment)
        security = container["securityContext"]

        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        assert security["runAsNonRoot"] is True
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]


def test_every_deployment_has_resource_requests_and_limits() -> None:
    """Each container declares CPU and memory requests and limits."""
    for deployment in deployments().values():
        resources = only_container(deployment)["resources"]

        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[bound])


def test_every_deployment_drains_before_it_stops() -> None:
    """Each pod sleeps in preStop and has a grace period long enough for it, the proxy the longest."""
    for name, deployment in deployments().items():
        pod = pod_spec(deployment)
        pre_stop = only_container(deployment)["lifecycle"]["preStop"]["sleep"]["seconds"]

        assert 0 < pre_stop < pod["terminationGracePeriodSeconds"]
        if name == "proxy":
            assert pod["terminationGracePeriodSeconds"] >= 60


def test_every_service_has_a_disruption_budget() -> None:
    """Each service's pods are covered by a PodDisruptionBudget."""
    budgets = objects(BASE, "PodDisruptionBudget")

    for name, deployment in deployments().items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if labels_match(b["spec"]["selector"], labels)]

        assert len(covering) == 1, name


def test_the_proxy_scales_on_cpu_from_two_replicas() -> None:
    """The proxy, and only the proxy, has a CPU-based HorizontalPodAutoscaler with at least two replicas."""
    autoscalers = objects(BASE, "HorizontalPodAutoscaler")

    assert [hpa["spec"]["scaleTargetRef"]["name"] for hpa in autoscalers] == ["byom-proxy"]
    (hpa,) = autoscalers
    assert hpa["spec"]["minReplicas"] >= 2
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert "replicas" not in deployments()["proxy"]["spec"]


def test_no_ingress_path_reaches_an_internal_route() -> None:
    """No Ingress path, anywhere under deploy/k8s, names or prefixes a service's internal routes."""
    paths = [
        path
        for ingress in objects(K8S, "Ingress")
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert paths

    for path in paths:
        assert "/internal" not in path["path"]
        assert path["pathType"] in ("Prefix", "Exact")
        for route in INTERNAL_ROUTES:
            assert not route.startswith(path["path"].rstrip("/") + "/"), path["path"]


def test_the_ingress_serves_every_public_prefix() -> None:
    """The base Ingress routes /v1 to the proxy and /<service>/v1 to each admin API."""
    (ingress,) = objects(BASE, "Ingress")
    routes = {
        path["path"]: path["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }

    api_routes = {path: name for path, name in routes.items() if name != "byom-console"}
    assert api_routes == {
        "/v1": "byom-proxy",
        "/access/v1": "byom-access",
        "/keyvault/v1": "byom-keyvault",
        "/catalog/v1": "byom-catalog",
    }
    assert all(path.startswith("/console") for path, n in routes.items() if n == "byom-console")


def route_paths(routes: Any) -> Iterator[str]:
    """Every route's path, through the routers an app includes."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from route_paths(included.routes)
        else:
            yield str(route.path)


def test_the_ingress_serves_every_console_page_and_none_of_its_probes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each of the console's pages matches an Ingress path; its health and metrics routes match none."""
    monkeypatch.setenv("BYOM_ENVIRONMENT", "development")
    from services.console.app import create_app

    (ingress,) = objects(BASE, "Ingress")
    console_paths = [
        path
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
        if path["backend"]["service"]["name"] == "byom-console"
    ]

    def routed(url: str) -> bool:
        return any(
            url == p["path"]
            or (p["pathType"] == "Prefix" and url.startswith(p["path"].rstrip("/") + "/"))
            or (p["pathType"] == "Prefix" and url == p["path"])
            for p in console_paths
        )

    # A path parameter stands for any one segment.
    pages = [re.sub(r"\{[^}]+\}", "x", path) for path in route_paths(create_app().routes)]
    probes = {"/console/healthz", "/console/readyz", "/console/metrics"}

    assert {"/console/", "/console/sign-in", "/console/settings/models"} <= set(pages)
    for page in pages:
        assert routed(page) != (page in probes), page


def test_the_keyring_is_mounted_only_in_keyvault() -> None:
    """The keyring Secret appears in keyvault's volumes and in no other Deployment's."""
    holders = [name for name, d in deployments().items() if "byom-keyring" in mounted_secrets(d)]

    assert holders == ["keyvault"]


def test_each_service_mounts_only_the_secrets_it_reads() -> None:
    """The service secret goes to the four services, the operator token to the three with operator routes, the database URL to all but the proxy; the console gets only its session secret."""
    expected = {
        "access": {"byom-service-secret", "byom-operator-token", "byom-database"},
        "keyvault": {"byom-service-secret", "byom-operator-token", "byom-database", "byom-keyring"},
        "catalog": {"byom-service-secret", "byom-operator-token", "byom-database"},
        "proxy": {"byom-service-secret"},
        "console": {"byom-console-secret"},
    }

    assert {name: mounted_secrets(d) for name, d in deployments().items()} == expected


def test_secret_files_are_named_as_the_settings_expect() -> None:
    """Files in the settings directory are named byom_<field>, the only names pydantic-settings reads there."""
    for deployment in deployments().values():
        container = only_container(deployment)
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        for volume in pod_spec(deployment)["volumes"]:
            if mounts.get(volume["name"]) != SETTINGS_DIR:
                continue

            for source in volume["projected"]["sources"]:
                for item in source["secret"]["items"]:
                    assert item["path"].startswith("byom_"), item["path"]


def test_no_secret_value_is_committed() -> None:
    """No Secret object or secret generator under deploy/k8s carries a value: the operator creates them."""
    for path, document in documents(K8S):
        if document.get("kind") == "Secret":
            assert not document.get("data") and not document.get("stringData"), path
        assert "secretGenerator" not in document, path


def test_the_config_map_holds_no_secret_setting() -> None:
    """The generated byom-config ConfigMap carries URLs and names only, never a credential."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text(encoding="utf-8"))
    (config,) = [g for g in kustomization["configMapGenerator"] if g["name"] == "byom-config"]
    names = [literal.split("=", 1)[0] for literal in config["literals"]]

    for name in names:
        for word in ("SECRET", "TOKEN", "PASSWORD", "KEYRING", "DATABASE"):
            assert word not in name, name

    for deployment in deployments().values():
        env_from = only_container(deployment)["envFrom"]
        assert {"configMapRef": {"name": "byom-config"}} in env_from


def kustomize_build(overlay: Path) -> list[Manifest]:
    kustomize = shutil.which("kustomize")
    kubectl = shutil.which("kubectl")
    if kustomize:
        command = [kustomize, "build", str(overlay)]
    elif kubectl:
        command = [kubectl, "kustomize", str(overlay)]
    else:
        pytest.skip("neither kustomize nor kubectl is installed")

    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    return [d for d in yaml.safe_load_all(result.stdout) if isinstance(d, dict)]


@pytest.mark.parametrize(
    ("overlay", "namespace", "replicas", "proxy_min"),
    [("production", "byom", 3, 3), ("dev", "byom-dev", 1, None)],
)
def test_overlays_build_with_their_namespace_and_replicas(
    overlay: str, namespace: str, replicas: int, proxy_min: int | None
) -> None:
    """Each overlay renders with kustomize, in its own namespace, at its replica counts."""
    rendered = kustomize_build(K8S / "overlays" / overlay)
    scoped = [d for d in rendered if d["kind"] != "Namespace"]
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in rendered}
    autoscalers = [d for d in rendered if d["kind"] == "HorizontalPodAutoscaler"]

    assert all(d["metadata"]["namespace"] == namespace for d in scoped)
    for name in ("byom-access", "byom-keyvault", "byom-catalog"):
        assert by_name[("Deployment", name)]["spec"]["replicas"] == replicas
    if proxy_min is None:
        assert autoscalers == []
        assert by_name[("Deployment", "byom-proxy")]["spec"]["replicas"] == 1
    else:
        assert [hpa["spec"]["minReplicas"] for hpa in autoscalers] == [proxy_min]
