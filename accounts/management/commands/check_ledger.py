from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.selectors import ledger_problems


class Command(BaseCommand):
    help = (
        "Verify the ledger: every posting sums to zero, every balance equals its entries, "
        "no user balance below zero."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        problems = ledger_problems()
        if problems:
            raise CommandError("ledger check FAILED:\n" + "\n".join(f"- {problem}" for problem in problems))
        self.stdout.write("ledger OK")
