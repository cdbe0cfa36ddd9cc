from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from jobs.services.maintenance import catch_up_stored_state
from miners.services import purge_inactive_miners


class Command(BaseCommand):
    help = (
        "Bring the stored state up to date: requeue jobs whose lease lapsed, expire overdue jobs, mark silent miners "
        "inactive, delete the partial output of jobs that ended over JOB_OUTPUT_RETENTION_SECONDS ago. Idempotent "
        "and safe to run concurrently (cron, systemd timer)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--purge-after",
            type=int,
            metavar="DAYS",
            help="Also delete miners inactive this many days that never held a job (others are kept as the archive).",
        )

    def handle(self, *args: Any, purge_after: int | None, **options: Any) -> None:
        counts = catch_up_stored_state()
        if purge_after is not None:
            if purge_after < 1:
                raise CommandError("--purge-after must be at least 1 day.", returncode=2)
            counts["miners_purged"] = purge_inactive_miners(
                inactive_for=timedelta(days=purge_after), now=timezone.now()
            )
        self.stdout.write(" ".join(f"{name}={count}" for name, count in counts.items()))
