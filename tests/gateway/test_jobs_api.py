"""The jobs admin API: submit, list, show, logs, cancel, retry, within one's own project only."""

from __future__ import annotations

from stratum.governance.schemas import OrgCreate, ProjectCreate
from tests.gateway.conftest import Gateway


def _keys(gateway: Gateway) -> dict[str, str]:
    state = gateway.state
    for org in ("org-a", "org-b"):
        state.tenancy.create_org(OrgCreate(name=org))
    state.tenancy.create_project("org-a", ProjectCreate(name="proj-a"))
    state.tenancy.create_project("org-b", ProjectCreate(name="proj-b"))
    keys = {}
    for label, project, role in (
        ("dev_a", "org-a/proj-a", "developer"),
        ("viewer_a", "org-a/proj-a", "viewer"),
        ("dev_b", "org-b/proj-b", "developer"),
        ("org_admin_a", "org-a", "org_admin"),
    ):
        keys[label], _ = state.keys.create_key(name=label, role=role, project=project)
    keys["admin"], _ = state.keys.create_key(name="ops", role="admin")
    return keys


def _h(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_submit_list_show_cancel_retry_logs(gateway: Gateway) -> None:
    keys = _keys(gateway)
    client, base = gateway.client, "/admin/v1/orgs/org-a/projects/proj-a/jobs"
    body = {"kind": "sleep", "name": "睡眠", "priority": 3, "config": {"seconds": 0.1, "message": "你好"}}
    created = client.post(base, json=body, headers=_h(keys["dev_a"]))
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["status"] == "queued" and job["project"] == "org-a/proj-a" and job["pool"] == "cpu"
    assert job["config"] == {"seconds": 0.1, "steps": 10, "message": "你好"}  # normalised by the kind
    listed = client.get(base, headers=_h(keys["viewer_a"])).json()
    assert [j["id"] for j in listed] == [job["id"]]
    shown = client.get(f"{base}/{job['id']}", headers=_h(keys["viewer_a"]))
    assert shown.json()["name"] == "睡眠"
    # A viewer reads but may not cancel.
    denied = client.post(f"{base}/{job['id']}/cancel", headers=_h(keys["viewer_a"]))
    assert denied.status_code == 403 and denied.json()["error"]["rule"] == "rbac.viewer"
    cancelled = client.post(f"{base}/{job['id']}/cancel", headers=_h(keys["dev_a"]))
    assert cancelled.json()["status"] == "cancelled"
    again = client.post(f"{base}/{job['id']}/cancel", headers=_h(keys["dev_a"]))
    assert again.status_code == 409 and again.json()["error"]["type"] == "conflict_error"
    retried = client.post(f"{base}/{job['id']}/retry", headers=_h(keys["dev_a"]))
    assert retried.json()["status"] == "queued"
    logs = client.get(f"{base}/{job['id']}/logs", headers=_h(keys["dev_a"]))
    assert logs.status_code == 200 and logs.json() == {"id": job["id"], "text": "", "offset": 0}


def test_bad_requests_are_openai_shaped(gateway: Gateway) -> None:
    keys = _keys(gateway)
    base = "/admin/v1/orgs/org-a/projects/proj-a/jobs"
    unknown = gateway.client.post(base, json={"kind": "nope"}, headers=_h(keys["dev_a"]))
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "kind"
    bad = gateway.client.post(base, json={"kind": "sleep", "config": {"x": 1}}, headers=_h(keys["dev_a"]))
    assert bad.status_code == 400 and "x" in bad.json()["error"]["message"]
    files = {"kind": "sft", "config": {"dataset_path": "/etc/passwd", "base": "m"}}
    denied = gateway.client.post(base, json=files, headers=_h(keys["dev_a"]))
    assert denied.status_code == 403 and "dataset_path" in denied.json()["error"]["message"]
    missing = gateway.client.get(f"{base}/nope", headers=_h(keys["dev_a"]))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"
    bad_status = gateway.client.get(f"{base}?status=done", headers=_h(keys["dev_a"]))
    assert bad_status.status_code == 400


def test_jobs_of_another_project_stay_invisible(gateway: Gateway) -> None:
    keys = _keys(gateway)
    client = gateway.client
    body = {"kind": "sleep", "config": {"seconds": 0}}
    a_job = client.post("/admin/v1/orgs/org-a/projects/proj-a/jobs", json=body, headers=_h(keys["dev_a"]))
    b_job = client.post("/admin/v1/orgs/org-b/projects/proj-b/jobs", json=body, headers=_h(keys["dev_b"]))
    a_id, b_id = a_job.json()["id"], b_job.json()["id"]
    # B's job id through A's own project path: not found, and nothing about it leaks.
    probe = client.get(f"/admin/v1/orgs/org-a/projects/proj-a/jobs/{b_id}", headers=_h(keys["dev_a"]))
    assert probe.status_code == 404 and "proj-b" not in probe.text
    assert [j["id"] for j in client.get("/admin/v1/jobs", headers=_h(keys["dev_a"])).json()] == [a_id]
    assert [j["id"] for j in client.get("/admin/v1/jobs", headers=_h(keys["org_admin_a"])).json()] == [a_id]
    everything = client.get("/admin/v1/jobs", headers=_h(keys["admin"])).json()
    assert {j["id"] for j in everything} == {a_id, b_id}
    denied = client.get("/admin/v1/jobs", headers=gateway.headers)  # a platform "user" key
    assert denied.status_code == 403


def test_a_key_scoped_to_some_models_fine_tunes_only_those(gateway: Gateway) -> None:
    keys = _keys(gateway)
    scoped, _ = gateway.state.keys.create_key(
        name="scoped", role="developer", project="org-a/proj-a", models=["qwen*"]
    )
    base = "/admin/v1/orgs/org-a/projects/proj-a/jobs"
    body = {"kind": "sft", "config": {"base": "fake", "dataset": "faq@1"}}
    denied = gateway.client.post(base, json=body, headers=_h(scoped))
    assert denied.status_code == 403 and denied.json()["error"]["rule"] == "key.models"
    allowed = gateway.client.post(base, json=body, headers=_h(keys["dev_a"]))
    assert allowed.status_code == 201, allowed.text


def test_an_exclusive_key_from_the_api_is_the_projects_own(gateway: Gateway) -> None:
    """A key given to ``POST …/jobs`` is scoped to its project: a second job with it there is a
    409 naming the holder, while another project's same key (or a key shaped like a KB's ingest
    key) neither waits for nor reveals that job."""
    keys = _keys(gateway)
    client = gateway.client
    a_base, b_base = "/admin/v1/orgs/org-a/projects/proj-a/jobs", "/admin/v1/orgs/org-b/projects/proj-b/jobs"
    body = {"kind": "sleep", "config": {"seconds": 0}, "exclusive_key": "每晚"}
    first = client.post(a_base, json=body, headers=_h(keys["dev_a"]))
    assert first.status_code == 201, first.text
    project_id = gateway.state.tenancy.get_project("org-a/proj-a").id
    assert first.json()["exclusive_key"] == f"project:{project_id}:每晚"
    second = client.post(a_base, json=body, headers=_h(keys["dev_a"]))
    assert second.status_code == 409 and second.json()["error"]["code"] == "exclusive_key_held"
    assert first.json()["id"] in second.json()["error"]["message"]
    other = client.post(b_base, json=body, headers=_h(keys["dev_b"]))
    assert other.status_code == 201 and first.json()["id"] not in other.text
    squat = {"kind": "sleep", "config": {"seconds": 0}, "exclusive_key": "kb_ingest:abc"}
    assert (
        client.post(b_base, json=squat, headers=_h(keys["dev_b"])).json()["exclusive_key"] != "kb_ingest:abc"
    )
