"""Requests as the original AITBC tools send them."""

from typing import Any

from rest_framework.test import APIClient

TOOL_CAPABILITIES = {
    "gpu": {"model": "RTX 4060 Ti", "memory_gb": 16, "cuda_version": "12.4"},
    "compute": {
        "type": "GPU",
        "platform": "CUDA",
        "supported_tasks": ["inference", "training"],
        "max_concurrent_jobs": 1,
    },
}


def submit(api: APIClient, **overrides: Any) -> Any:
    body = {"payload": {"type": "inference", "prompt": "hello"}, "ttl_seconds": 900, **overrides}
    return api.post("/v1/jobs", body, format="json")


def submitted(api: APIClient, **overrides: Any) -> dict[str, Any]:
    response = submit(api, **overrides)
    assert response.status_code == 201, response.content
    return response.json()


def register(api: APIClient, name: str = "cli-miner", capabilities: dict[str, Any] | None = None) -> Any:
    body = {"capabilities": TOOL_CAPABILITIES if capabilities is None else capabilities}
    return api.post(f"/v1/miners/register?miner_id={name}", body, format="json")


def registered(api: APIClient, name: str = "cli-miner", **kwargs: Any) -> dict[str, Any]:
    response = register(api, name, **kwargs)
    assert response.status_code == 200, response.content
    return response.json()


def poll(api: APIClient, max_wait_seconds: int = 0) -> Any:
    return api.post("/v1/miners/poll", {"max_wait_seconds": max_wait_seconds}, format="json")


def heartbeat(api: APIClient, name: str = "cli-miner", **overrides: Any) -> Any:
    body = {"status": "ONLINE", "inflight": 0, "metadata": {"gpu_utilization": 75}, **overrides}
    return api.post(f"/v1/miners/heartbeat?miner_id={name}", body, format="json")


def post_result(api: APIClient, job_id: str, **overrides: Any) -> Any:
    body = {"result": {"status": "completed", "output": "done"}, "metrics": {"aitbc_earned": 10.0}, **overrides}
    return api.post(f"/v1/miners/{job_id}/result", body, format="json")


def taken(client: APIClient, miner: APIClient, **job: Any) -> dict[str, Any]:
    """A job submitted in the original dialect and handed to the miner `cli-miner`."""
    submitted_job = submitted(client, **job)
    registered(miner)
    response = poll(miner)
    assert response.status_code == 200, response.content
    assert response.json()["job_id"] == submitted_job["job_id"]
    return submitted_job
