"""How the original dialect's words map to ours: job types, job states and constraints. The README's table "The
original AITBC dialect" is this module in prose."""

from typing import Any

from django.conf import settings

from aitbc_site.exceptions import InvalidJobType
from jobs.models import JobStatus
from miners.models import MinerStatus

# `payload.type` of a job and `compute.supported_tasks` of a miner, as the original tools and their users spell
# them, to our job types. Our own type names are accepted as they are.
ORIGINAL_TYPES: dict[str, str] = {
    "inference": "llm_inference",
    "text-generation": "llm_inference",
    "llm": "llm_inference",
    "training": "fine_tuning",
    "fine-tuning": "fine_tuning",
    "image": "image_generation",
    "image-generation": "image_generation",
    "embedding": "embedding",
    "embeddings": "embedding",
    "transcription": "audio_transcription",
    "audio-transcription": "audio_transcription",
}

# Our job type to the name a job submitted through our own API reads back under.
ORIGINAL_NAME_OF_TYPE = {
    "llm_inference": "inference",
    "fine_tuning": "training",
    "image_generation": "image",
    "embedding": "embedding",
    "audio_transcription": "transcription",
}

STATE_OF_STATUS = {
    JobStatus.PENDING: "QUEUED",
    JobStatus.RUNNING: "RUNNING",
    JobStatus.COMPLETED: "COMPLETED",
    JobStatus.FAILED: "FAILED",
    JobStatus.CANCELLED: "CANCELED",
    JobStatus.EXPIRED: "EXPIRED",
}

# A heartbeat's `status`: the first two take work, the others do not.
MINER_STATUS_OF_STATE = {
    "ONLINE": MinerStatus.ACTIVE,
    "BUSY": MinerStatus.ACTIVE,
    "DRAINING": MinerStatus.DRAINING,
    "OFFLINE": MinerStatus.DRAINING,
}

# A miner that names no supported tasks runs inference, as in the original coordinator.
DEFAULT_JOB_TYPE = "llm_inference"


def accepted_type_names() -> list[str]:
    """Every `type` this server takes: the original names of configured job types, then our own names."""
    configured = set(settings.JOB_TYPES)
    return [name for name, job_type in ORIGINAL_TYPES.items() if job_type in configured] + list(settings.JOB_TYPES)


def job_type_of(names: list[str]) -> list[str]:
    """Our job types for original type names, in order and without repeats; INVALID_JOB_TYPE names the ones this
    server does not run, with every name it accepts."""
    configured = set(settings.JOB_TYPES)
    job_types = [ORIGINAL_TYPES.get(name, name) for name in names]
    unknown = [name for name, job_type in zip(names, job_types, strict=True) if job_type not in configured]
    if unknown:
        raise InvalidJobType(
            f"Unsupported job type(s): {', '.join(unknown[:10])}.",
            details={"unsupported": unknown[:10], "supported": accepted_type_names()},
        )
    return list(dict.fromkeys(job_types))


def offered_job_types(tasks: list[str]) -> list[str]:
    """The job types a miner's `supported_tasks` offer: the names this server does not run are left out (they stay
    in what the miner reported), the default when it names none; INVALID_JOB_TYPE when none of them is run here."""
    if not tasks:
        return [DEFAULT_JOB_TYPE] if DEFAULT_JOB_TYPE in settings.JOB_TYPES else list(settings.JOB_TYPES[:1])
    configured = set(settings.JOB_TYPES)
    offered = [job_type for job_type in (ORIGINAL_TYPES.get(task, task) for task in tasks) if job_type in configured]
    if not offered:
        raise InvalidJobType(
            "None of the supported_tasks is a job type this server runs.",
            details={"unsupported": tasks[:10], "supported": accepted_type_names()},
        )
    return list(dict.fromkeys(offered))


def original_type_name(*, job_type: str, original_type: str) -> str:
    return original_type or ORIGINAL_NAME_OF_TYPE.get(job_type, job_type)


def resources_of(capabilities: dict[str, Any], *, region: str | None) -> dict[str, Any]:
    """A miner's original `capabilities` (as read: `gpu`, `models`, `region`) as our resources; a top-level
    `region` wins over the one inside them."""
    gpu = capabilities.get("gpu", {})
    resources = {
        "gpu_model": gpu.get("model"),
        "gpu_memory_gb": gpu.get("memory_gb"),
        "models": capabilities.get("models"),
        "region": region or capabilities.get("region"),
    }
    return {ours: value for ours, value in resources.items() if value is not None}


def requirements_of(constraints: dict[str, Any]) -> dict[str, Any]:
    """The original `constraints` as our job requirements (max_price travels separately)."""
    names = {"gpu": "gpu_model", "min_vram_gb": "min_gpu_memory_gb", "models": "models", "region": "region"}
    return {ours: constraints[theirs] for theirs, ours in names.items() if theirs in constraints}


def constraints_of(requirements: dict[str, Any]) -> dict[str, Any]:
    names = {"gpu_model": "gpu", "min_gpu_memory_gb": "min_vram_gb", "models": "models", "region": "region"}
    return {theirs: requirements[ours] for ours, theirs in names.items() if ours in requirements}
