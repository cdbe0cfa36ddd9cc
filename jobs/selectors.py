from uuid import UUID

from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import User
from jobs.exceptions import JobNotFound
from jobs.models import Job, JobEvent, JobStatus


def effective_status(job: Job) -> str:
    """The status as it reads now: a pending job past its deadline is expired even before maintenance stores it."""
    if job.status == JobStatus.PENDING and job.expires_at <= timezone.now():
        return JobStatus.EXPIRED
    return job.status


def job_get_for_client(*, job_id: UUID | str, client: User) -> Job:
    """The caller's own job; another owner's job, or a malformed id, is JOB_NOT_FOUND."""
    try:
        return Job.objects.get(pk=job_id, client=client)
    except (Job.DoesNotExist, ValueError):
        raise JobNotFound() from None


def jobs_for_client(*, client: User, status: str | None = None, job_type: str | None = None) -> QuerySet[Job]:
    jobs = Job.objects.filter(client=client)
    now = timezone.now()
    if status == JobStatus.EXPIRED:
        jobs = jobs.filter(status__in=[JobStatus.EXPIRED, JobStatus.PENDING]).exclude(
            status=JobStatus.PENDING, expires_at__gt=now
        )
    elif status == JobStatus.PENDING:
        jobs = jobs.filter(status=JobStatus.PENDING, expires_at__gt=now)
    elif status:
        jobs = jobs.filter(status=status)
    if job_type:
        jobs = jobs.filter(job_type=job_type)
    return jobs


def job_events(*, job: Job) -> QuerySet[JobEvent]:
    return JobEvent.objects.filter(job=job)
