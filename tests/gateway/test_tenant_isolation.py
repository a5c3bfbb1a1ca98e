"""Tenant isolation over the whole admin route table: a key of project A never sees project B.

The table is read from the router: a new admin route is covered, or fails
``test_every_admin_route_is_covered``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.routing import APIRoute

from stratum.gateway.routes import admin, databases, datasets, guard, jobs, routing
from stratum.gateway.routes.kb import router as kb_router
from stratum.governance.schemas import OrgCreate, ProjectCreate
from stratum.knowledge.schemas import KbCreate
from tests.conftest import isolate_environment
from tests.gateway.conftest import Gateway, running_gateway

# A valid body per route, so every request reaches the authorisation step.
BODIES = {
    ("POST", "/admin/v1/orgs"): {"name": "new-org"},
    ("POST", "/admin/v1/orgs/{org}/projects"): {"name": "new-project"},
    ("PATCH", "/admin/v1/orgs/{org}/projects/{project}"): {"rpm": 5},
    ("POST", "/admin/v1/orgs/{org}/projects/{project}/keys"): {"role": "developer"},
    ("PUT", "/admin/v1/policies/{name}"): {"name": "r1", "actions": ["chat"]},
    ("POST", "/admin/v1/orgs/{org}/projects/{project}/jobs"): {"kind": "sleep", "config": {"seconds": 0}},
    ("POST", "/admin/v1/orgs/{org}/projects/{project}/datasets"): {
        "name": "d",
        "rows": [{"instruction": "问", "output": "答"}],
    },
    ("POST", "/admin/v1/orgs/{org}/projects/{project}/datasets/from-feedback"): {"name": "反馈"},
    ("POST", "/admin/v1/orgs/{org}/projects/{project}/datasets/{dataset}/versions/{version}/transform"): {
        "steps": ["clean"]
    },
    ("POST", "/admin/v1/orgs/{org}/projects/{project}/datasets/{dataset}/versions/{version}/label"): {
        "rules": {"a": ["b"]}
    },
    ("POST", "/admin/v1/orgs/{org}/projects/{project}/datasets/{dataset}/versions/{version}/review"): [
        {"row_index": 0, "decision": "accept"}
    ],
    ("PATCH", "/admin/v1/orgs/{org}/projects/{project}/guard"): {"injection": "block"},
    ("POST", "/admin/v1/orgs/{org}/projects/{project}/guard/words"): {"add": ["词"]},
    ("PATCH", "/admin/v1/guard/default"): {"injection": "block"},
    ("POST", "/admin/v1/guard/default/words"): {"add": ["词"]},
    ("POST", "/admin/v1/guard/scan"): {"text": "x"},
    ("POST", "/admin/v1/orgs/{org}/projects/{project}/databases"): {
        "name": "sales",
        "url": "sqlite:///sales.db",
        "model": "fake",
        "tables": {"orders": ["*"]},
    },
    ("POST", "/admin/v1/orgs/{org}/projects/{project}/databases/{name}/query"): {"sql": "SELECT 1"},
}
ADMIN_ROUTES = sorted(
    (method, route.path)
    for router in (admin.router, datasets.router, guard.router, jobs.router, databases.router, routing.router)
    for route in router.routes
    if isinstance(route, APIRoute)
    for method in route.methods
)
TENANT_ROUTES = [r for r in ADMIN_ROUTES if "{org}" in r[1]]


@pytest.fixture
def tenants(gateway: Gateway) -> dict[str, object]:
    return _make_tenants(gateway)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, dict[str, object]]]:
    """One gateway and tenant set for the ~230 denial cases below, instead of one per case.

    Safe to share: every request in those tests must be refused (403) before it touches anything, and a
    request that got through would fail its own test. The knowledge base each KB test used to create
    is created here, once in org B and once in project A's sibling.
    """
    with pytest.MonkeyPatch.context() as patch:
        # What tests/conftest.py's autouse fixture does per test, for the lifetime of this module.
        home = tmp_path_factory.mktemp("tenant-isolation") / "home"
        isolate_environment(patch, home)
        with running_gateway(home) as gateway:
            tenants = _make_tenants(gateway)
            gateway.state.knowledge.create(KbCreate(name="b-docs"), project="org-b/proj-b")
            gateway.state.knowledge.create(KbCreate(name="b-docs"), project="org-a/proj-a2")
            yield gateway, tenants


def _make_tenants(gateway: Gateway) -> dict[str, object]:
    state = gateway.state
    for org in ("org-a", "org-b"):
        state.tenancy.create_org(OrgCreate(name=org))
    for path in ("org-a/proj-a", "org-a/proj-a2", "org-b/proj-b"):
        org, name = path.split("/")
        state.tenancy.create_project(org, ProjectCreate(name=name))
    keys = {}
    for label, project, role in (
        ("developer", "org-a/proj-a", "developer"),
        ("viewer", "org-a/proj-a", "viewer"),
        ("org_admin", "org-a", "org_admin"),
        ("b_key", "org-b/proj-b", "developer"),
    ):
        keys[label], _ = state.keys.create_key(name=label, role=role, project=project)
    b_key = state.keys.list_keys(project_id=state.tenancy.get_project("org-b/proj-b").id)[0]
    return {"keys": keys, "b_key_id": b_key.id}


def _call(gateway: Gateway, method: str, path: str, key: str, **params: str):  # type: ignore[no-untyped-def]
    names = {"org": "org-b", "project": "proj-b", "key_id": "x", "name": "r1", "dataset": "d", "version": "1"}
    url = path.format(**{**names, "job_id": "j", **params})
    body = BODIES.get((method, path))
    return gateway.client.request(method, url, json=body, headers={"authorization": f"Bearer {key}"})


def test_every_admin_route_is_covered() -> None:
    untenanted = {r for r in ADMIN_ROUTES if r not in TENANT_ROUTES}
    assert untenanted == {
        ("GET", "/admin/v1/orgs"),
        ("POST", "/admin/v1/orgs"),
        ("GET", "/admin/v1/policies"),
        ("PUT", "/admin/v1/policies/{name}"),
        ("DELETE", "/admin/v1/policies/{name}"),
        ("GET", "/admin/v1/audit"),
        ("GET", "/admin/v1/prices"),
        ("PUT", "/admin/v1/prices/{model:path}"),
        ("GET", "/admin/v1/guard/default"),
        ("PATCH", "/admin/v1/guard/default"),
        ("POST", "/admin/v1/guard/default/words"),
        ("POST", "/admin/v1/guard/scan"),
        ("GET", "/admin/v1/jobs"),
        # Routing configuration is platform-wide (tests/gateway/test_routing.py: tenant keys get 403).
        ("GET", "/admin/v1/routes"),
        ("GET", "/admin/v1/routes/{model:path}"),
        ("PUT", "/admin/v1/routes/{model:path}"),
        ("DELETE", "/admin/v1/routes/{model:path}"),
        ("GET", "/admin/v1/backends"),
        ("GET", "/admin/v1/rules"),
        ("PUT", "/admin/v1/rules/{name}"),
        ("DELETE", "/admin/v1/rules/{name}"),
        ("GET", "/admin/v1/queue"),
        ("GET", "/admin/v1/queue/{ticket_id}"),
        ("POST", "/admin/v1/queue/{ticket_id}/answer"),
        ("DELETE", "/admin/v1/cache"),
    }


@pytest.mark.parametrize(("method", "path"), TENANT_ROUTES)
@pytest.mark.parametrize("who", ["developer", "viewer", "org_admin"])
def test_project_a_keys_never_reach_org_b(
    shared: tuple[Gateway, dict[str, object]], method: str, path: str, who: str
) -> None:
    gateway, tenants = shared
    key = tenants["keys"][who]  # type: ignore[index]
    for target in ({}, {"project": "no-such-project"}, {"org": "no-such-org"}):
        response = _call(gateway, method, path, key, key_id=str(tenants["b_key_id"]), **target)
        assert response.status_code == 403, (response.status_code, response.text)
        assert response.json()["error"]["rule"] == "tenancy.org"
        assert "proj-b" not in response.text and str(tenants["b_key_id"]) not in response.text


@pytest.mark.parametrize(("method", "path"), [r for r in TENANT_ROUTES if "{project}" in r[1]])
@pytest.mark.parametrize("who", ["developer", "viewer"])
def test_project_keys_never_reach_a_sibling_project(
    shared: tuple[Gateway, dict[str, object]], method: str, path: str, who: str
) -> None:
    gateway, tenants = shared
    key = tenants["keys"][who]  # type: ignore[index]
    response = _call(gateway, method, path, key, org="org-a", project="proj-a2")
    assert response.status_code == 403
    assert response.json()["error"]["rule"] == "tenancy.project"


@pytest.mark.parametrize("who", ["developer", "viewer", "org_admin"])
def test_lists_show_only_the_own_tenant(gateway: Gateway, tenants: dict[str, object], who: str) -> None:
    key = tenants["keys"][who]  # type: ignore[index]
    headers = {"authorization": f"Bearer {key}"}
    orgs = gateway.client.get("/admin/v1/orgs", headers=headers)
    if who == "org_admin":
        assert [o["name"] for o in orgs.json()] == ["org-a"]
    else:
        assert orgs.status_code == 403 and orgs.json()["error"]["rule"] == f"rbac.{who}"
    projects = gateway.client.get("/admin/v1/orgs/org-a/projects", headers=headers).json()
    expected = ["proj-a", "proj-a2"] if who == "org_admin" else ["proj-a"]
    assert [p["name"] for p in projects] == expected
    for method, path in (("GET", "/admin/v1/policies"), ("POST", "/admin/v1/orgs")):
        response = _call(gateway, method, path, key)
        assert response.status_code == 403 and response.json()["error"]["rule"].startswith("rbac.")


def test_own_project_works_and_platform_admin_sees_all(gateway: Gateway, tenants: dict[str, object]) -> None:
    keys = tenants["keys"]  # type: ignore[assignment]
    developer = {"authorization": f"Bearer {keys['developer']}"}  # type: ignore[index]
    usage = gateway.client.get("/admin/v1/orgs/org-a/projects/proj-a/usage?by=key", headers=developer)
    assert usage.status_code == 200 and usage.json()["project"] == "org-a/proj-a"
    # A developer may read but not issue keys; the org admin may.
    created = _call(
        gateway,
        "POST",
        "/admin/v1/orgs/{org}/projects/{project}/keys",
        keys["developer"],
        org="org-a",
        project="proj-a",
    )  # type: ignore[index]
    assert created.status_code == 403 and created.json()["error"]["rule"] == "rbac.developer"
    created = _call(
        gateway,
        "POST",
        "/admin/v1/orgs/{org}/projects/{project}/keys",
        keys["org_admin"],
        org="org-a",
        project="proj-a",
    )  # type: ignore[index]
    assert created.status_code == 201 and created.json()["key"].startswith("sk-stm-")
    revoked = gateway.client.delete(
        f"/admin/v1/orgs/org-a/projects/proj-a/keys/{created.json()['id']}",
        headers={"authorization": f"Bearer {keys['org_admin']}"},  # type: ignore[index]
    )
    assert revoked.json()["status"] == "revoked"
    admin_key, _ = gateway.state.keys.create_key(name="ops", role="admin")
    admin = {"authorization": f"Bearer {admin_key}"}
    everything = gateway.client.get("/admin/v1/orgs", headers=admin).json()
    assert {o["name"] for o in everything} == {"org-a", "org-b"}
    assert gateway.client.get("/admin/v1/orgs/nope", headers=admin).status_code == 404
    # A platform "user" key (the foundation's default) has no admin rights at all.
    assert (
        gateway.client.get("/admin/v1/orgs", headers=gateway.headers).json()["error"]["rule"] == "rbac.user"
    )
    schema = gateway.client.get("/openapi.json").json()
    assert "/admin/v1/orgs/{org}/projects/{project}/usage" in schema["paths"]


def test_audit_log_is_tenant_scoped(gateway: Gateway, tenants: dict[str, object]) -> None:
    keys = tenants["keys"]  # type: ignore[assignment]
    created = _call(
        gateway,
        "POST",
        "/admin/v1/orgs/{org}/projects/{project}/keys",
        keys["org_admin"],  # type: ignore[index]
        org="org-a",
        project="proj-a",
    )
    assert created.status_code == 201
    org_admin = {"authorization": f"Bearer {keys['org_admin']}"}  # type: ignore[index]
    own = gateway.client.get("/admin/v1/audit", headers=org_admin).json()
    org_a = gateway.state.tenancy.get_org("org-a").id
    assert own and {e["org_id"] for e in own} == {org_a}
    assert own[0]["action"] == "key.create" and own[0]["actor"] != "local"
    assert created.json()["key"] not in str(own)
    for who in ("developer", "viewer"):
        denied = _call(gateway, "GET", "/admin/v1/audit", keys[who])  # type: ignore[index]
        assert denied.status_code == 403 and denied.json()["error"]["rule"] == f"rbac.{who}"
    admin_key, _ = gateway.state.keys.create_key(name="ops", role="admin")
    everything = gateway.client.get(
        "/admin/v1/audit?limit=1000", headers={"authorization": f"Bearer {admin_key}"}
    )
    orgs = {e["org_id"] for e in everything.json()}
    assert org_a in orgs and gateway.state.tenancy.get_org("org-b").id in orgs
    assert gateway.state.audit.verify().ok


def test_prices_are_set_by_platform_admins(gateway: Gateway, tenants: dict[str, object]) -> None:
    keys = tenants["keys"]  # type: ignore[assignment]
    body = {"model": "qwen/中文", "input_per_1k": "0.1", "output_per_1k": "0.2"}
    org_admin = {"authorization": f"Bearer {keys['org_admin']}"}  # type: ignore[index]
    denied = gateway.client.put("/admin/v1/prices/qwen/中文", json=body, headers=org_admin)
    assert denied.status_code == 403
    admin_key, _ = gateway.state.keys.create_key(name="ops", role="admin")
    admin = {"authorization": f"Bearer {admin_key}"}
    saved = gateway.client.put("/admin/v1/prices/qwen/中文", json=body, headers=admin)
    assert saved.status_code == 200, saved.text
    mismatch = gateway.client.put("/admin/v1/prices/other", json=body, headers=admin)
    assert mismatch.status_code == 400
    listed = gateway.client.get("/admin/v1/prices", headers=org_admin).json()
    assert listed == [{"model": "qwen/中文", "input_per_1k": "0.100000", "output_per_1k": "0.200000"}]


@pytest.mark.parametrize("who", ["developer", "viewer", "org_admin"])
def test_guard_scan_and_defaults_stay_in_the_tenant(
    gateway: Gateway, tenants: dict[str, object], who: str
) -> None:
    key = tenants["keys"][who]  # type: ignore[index]
    headers = {"authorization": f"Bearer {key}"}
    for project in ("org-b/proj-b", "org-b/no-such-project"):
        scan = gateway.client.post(
            "/admin/v1/guard/scan", json={"text": "x", "project": project}, headers=headers
        )
        assert scan.status_code == 403 and "proj-b" not in scan.text
    for method, path in (("GET", "/admin/v1/guard/default"), ("PATCH", "/admin/v1/guard/default")):
        response = _call(gateway, method, path, key)
        assert response.status_code == 403 and response.json()["error"]["rule"].startswith("rbac.")


# --- knowledge bases (/admin/v1/kb): the project is a query parameter, not part of the path ---

KB_ROUTES = sorted(
    (method, route.path)
    for route in kb_router.routes
    if isinstance(route, APIRoute)
    for method in route.methods
)
KB_BODIES = {
    ("POST", "/admin/v1/kb/{kb}/ingest"): {"paths": ["/tmp"]},
    ("POST", "/admin/v1/kb/{kb}/search"): {"query": "开放时间"},
    ("PATCH", "/admin/v1/kb/{kb}"): {"settings": {"top_k": 3}},
}


def _kb_call(gateway: Gateway, method: str, path: str, key: str, project: str):  # type: ignore[no-untyped-def]
    url = path.format(kb="b-docs")
    body = KB_BODIES.get((method, path))
    if (method, path) == ("POST", "/admin/v1/kb"):
        body = {"name": "new-kb", "project": project}
    if (method, path) == ("POST", "/admin/v1/kb/{kb}/files"):  # a multipart upload
        return gateway.client.post(
            url,
            params={"project": project},
            files=[("files", ("说明.md", "# 标题\n\n正文".encode(), "text/markdown"))],
            headers={"authorization": f"Bearer {key}"},
        )
    return gateway.client.request(
        method, url, params={"project": project}, json=body, headers={"authorization": f"Bearer {key}"}
    )


@pytest.mark.parametrize(("method", "path"), KB_ROUTES)
@pytest.mark.parametrize("who", ["developer", "viewer", "org_admin"])
def test_project_a_keys_never_reach_org_b_knowledge_bases(
    shared: tuple[Gateway, dict[str, object]], method: str, path: str, who: str
) -> None:
    gateway, tenants = shared  # org B's "b-docs" exists
    key = tenants["keys"][who]  # type: ignore[index]
    for project in ("org-b/proj-b", "org-b/no-such-project", "no-such-org/p", "not-a-path"):
        response = _kb_call(gateway, method, path, key, project)
        assert response.status_code == 403, (project, response.status_code, response.text)
        assert response.json()["error"]["rule"] == "tenancy.org"
        assert "b-docs" not in response.text and "proj-b" not in response.text


@pytest.mark.parametrize(("method", "path"), KB_ROUTES)
@pytest.mark.parametrize("who", ["developer", "viewer"])
def test_project_keys_never_reach_a_sibling_projects_knowledge_bases(
    shared: tuple[Gateway, dict[str, object]], method: str, path: str, who: str
) -> None:
    gateway, tenants = shared  # proj-a2's "b-docs" exists
    response = _kb_call(gateway, method, path, tenants["keys"][who], "org-a/proj-a2")  # type: ignore[index]
    assert response.status_code == 403
    assert response.json()["error"]["rule"] == "tenancy.project"


def test_knowledge_base_lists_show_only_the_own_project(gateway: Gateway, tenants: dict[str, object]) -> None:
    for project in ("org-a/proj-a", "org-a/proj-a2", "org-b/proj-b"):
        gateway.state.knowledge.create(KbCreate(name=f"kb-{project.split('/')[1]}"), project=project)
    keys = tenants["keys"]  # type: ignore[assignment]
    expected = {"developer": ["kb-proj-a"], "viewer": ["kb-proj-a"], "org_admin": ["kb-proj-a", "kb-proj-a2"]}
    for who, names in expected.items():
        listed = gateway.client.get("/admin/v1/kb", headers={"authorization": f"Bearer {keys[who]}"})  # type: ignore[index]
        assert listed.status_code == 200, (who, listed.text)
        assert [kb["name"] for kb in listed.json()] == names, who
    viewer = {"authorization": f"Bearer {keys['viewer']}"}  # type: ignore[index]
    denied = gateway.client.post("/admin/v1/kb", json={"name": "x"}, headers=viewer)
    assert denied.status_code == 403 and denied.json()["error"]["rule"] == "rbac.viewer"
    # A platform "user" key belongs to no organisation: it reaches no project's knowledge bases.
    user = gateway.client.get("/admin/v1/kb", params={"project": "org-a/proj-a"}, headers=gateway.headers)
    assert user.status_code == 403 and user.json()["error"]["rule"] == "tenancy.org"
