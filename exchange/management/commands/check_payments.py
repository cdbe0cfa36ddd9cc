from typing import Any

from django.core.management.base import BaseCommand

from exchange.services.watching import check_open_payments


class Command(BaseCommand):
    help = (
        "Check every open payment against the chain once and move it along (credit, expire, hold for review), and "
        "every closed one under deposit watch for late deposits (at most every 10 minutes each). "
        "Idempotent and safe to run concurrently, e.g. every minute from a systemd timer."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        counts = check_open_payments()
        self.stdout.write(" ".join(f"{name}={count}" for name, count in counts.items()))
