from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accounts.models import ApiKeyRole, User
from accounts.services import api_key_issue


class Command(BaseCommand):
    help = "Issue an API key and print it once. Without --user the key gets a service user of its own."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--role", required=True, choices=ApiKeyRole.values)
        parser.add_argument("--name", required=True)
        parser.add_argument("--user", help="Username or wallet address of the owner.")

    def handle(self, *args: Any, role: str, name: str, user: str | None, **options: Any) -> None:
        owner = None
        if user:
            owner = User.objects.filter(username=user).first() or User.objects.filter(wallet_address=user).first()
            if owner is None:
                raise CommandError(f"No user {user!r}.")
        api_key, raw_key = api_key_issue(role=role, name=name, user=owner)
        self.stderr.write(
            f"Issued {role} key {api_key.prefix} ({name}) for user {api_key.user}. It is shown only once:"
        )
        self.stdout.write(raw_key)
