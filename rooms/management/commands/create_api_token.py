from django.core.management.base import BaseCommand

from rooms.api.tokens import api_token_create


class Command(BaseCommand):
    help = "Create the user if needed and print an API token for 'Authorization: Bearer'."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="a label for the token")

    def handle(self, *args, username: str, name: str, **options):
        _, raw = api_token_create(username=username, name=name)
        self.stdout.write(raw)
