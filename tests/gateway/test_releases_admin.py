"""``/admin/v1`` releases routes: what an admin can do, and that tenant keys reach none of it."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute

from stratum.gateway.routes.releases import router
from stratum.governance.schemas import OrgCreate, ProjectCreate
from tests.gateway.conftest import Gateway

ROUTES = sorted((m, r.path) for r in router.routes if isinstance(r, APIRoute) for m in r.methods)
BODIES = {"canary": {"candidate": "2"}, "ab": {"arms": {"1": 50, "2": 50}}}


def _url(path: str) -> str:
    return path.replace("{name:path}", "fake").replace("{action}", "stop") + (
        "?node=model:fake@1" if path.endswith("/lineage") else ""
    )


def test_admin_runs_a_canary_over_the_api(gateway: Gateway) -> None:
    gateway.add_model("fake")  # version 2
    admin, _ = gateway.state.keys.create_key(name="admin", role="admin")
    client, headers = gateway.client, {"authorization": f"Bearer {admin}"}
    created = client.post(
        "/admin/v1/deployments/fake/canary", json={"candidate": "2", "steps": [10, 100]}, headers=headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["weights"] == {"fake@1": 90.0, "fake@2": 10.0}
    assert client.get("/admin/v1/deployments", headers=headers).json()[0]["name"] == "fake"
    rolled = client.post("/admin/v1/deployments/fake/rollback", headers=headers)
    assert rolled.json()["status"] == "rolled_back"
    history = client.get("/admin/v1/deployments/fake/history", headers=headers).json()
    assert [e["action"] for e in history] == ["canary_started", "rolled_back"]
    again = client.post("/admin/v1/deployments/fake/rollback", headers=headers)
    assert again.status_code == 409 and again.json()["error"]["type"] == "conflict_error"
    bad = client.post(
        "/admin/v1/deployments/fake/canary", json={"candidate": "2", "steps": [50, 10]}, headers=headers
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "steps"
    assert client.get("/admin/v1/deployments/nope", headers=headers).status_code == 404
    graph = client.get("/admin/v1/lineage", params={"node": "fake@2"}, headers=headers).json()
    assert graph["downstream"][0]["target_id"] == "fake"
    assert client.get("/admin/v1/lineage", params={"node": "fake"}, headers=headers).status_code == 400
    assert client.get("/admin/v1/feedback", headers=headers).json() == []


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_tenant_keys_are_refused(gateway: Gateway, method: str, path: str) -> None:
    state = gateway.state
    state.tenancy.create_org(OrgCreate(name="org-a"))
    state.tenancy.create_project("org-a", ProjectCreate(name="p"))
    for role, project in (("developer", "org-a/p"), ("org_admin", "org-a")):
        key, _ = state.keys.create_key(name=role, role=role, project=project)
        body = BODIES.get(path.rsplit("/", 1)[-1])
        response = gateway.client.request(
            method, _url(path), json=body, headers={"authorization": f"Bearer {key}"}
        )
        assert response.status_code == 403, (role, response.text)
        assert response.json()["error"]["rule"] == f"rbac.{role}"
