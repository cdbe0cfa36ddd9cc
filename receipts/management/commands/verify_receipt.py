import json
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from receipts.services import receipt_verify


class Command(BaseCommand):
    help = "Verify a receipt file (JSON) against the coordinator's keys. Exits 1 if the receipt is not valid."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("file", type=Path)

    def handle(self, *args: Any, file: Path, **options: Any) -> None:
        try:
            document = json.loads(file.read_text())
        except (OSError, ValueError) as error:
            raise CommandError(f"Cannot read a JSON receipt from {file}: {error}", returncode=2) from None
        if not isinstance(document, dict) or "key_id" not in document or "proof" not in document:
            raise CommandError(f"{file} is not a receipt: a JSON object with key_id and proof.", returncode=2)
        outcome = receipt_verify(document=document)
        if not outcome.valid:
            raise CommandError(f"INVALID: {outcome.reason} (key {outcome.key_id})", returncode=1)
        self.stdout.write(f"VALID: signed by key {outcome.key_id}")
