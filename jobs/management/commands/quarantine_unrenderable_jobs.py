from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from jobs.serializers import JobSerializer
from jobs.services.unrenderable import quarantine_unrenderable_jobs


class Command(BaseCommand):
    help = (
        "Find stored jobs whose document cannot be rendered as JSON (a lone UTF-16 surrogate or a non-finite number "
        "read back from SQLite) and fail the pending and running ones with UNRENDERABLE_JOB, releasing their holds; "
        "ended ones are listed only. Idempotent: a second run changes nothing."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="List what would be set aside; change nothing.")
        parser.add_argument("--chunk-size", type=int, default=500, help="Jobs read per query (default 500).")

    def handle(self, *args: Any, dry_run: bool, chunk_size: int, **options: Any) -> None:
        if chunk_size < 1:
            raise CommandError("--chunk-size must be at least 1.", returncode=2)
        # The client's document holds every stored value any document of the job shows (the miner's is a subset).
        found = quarantine_unrenderable_jobs(
            document=JobSerializer().to_representation, dry_run=dry_run, chunk_size=chunk_size
        )
        counts: dict[str, int] = {}
        for job in found:
            counts[job.action] = counts.get(job.action, 0) + 1
            self.stdout.write(f"{job.action} job={job.job_id} status={job.status}: {job.problem}")
        summary = ("would_set_aside" if dry_run else "set_aside", "left", "already_set_aside", "changed")
        self.stdout.write(" ".join(f"{action}={counts.get(action, 0)}" for action in summary))
