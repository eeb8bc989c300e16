import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the operator login 'admin' with a generated password (kept in .admin_password, mode 600)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username: str, **options):
        path = settings.BASE_DIR / ".admin_password"
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser(username=username, email="", password=password)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(password)
            self.stdout.write(f"admin login created: {username} / {password}")
        elif path.exists():
            self.stdout.write(f"admin login: {username} / {path.read_text().strip()}")
        else:
            self.stdout.write(
                f"admin login: {username} (password set earlier; change it with manage.py changepassword {username})"
            )
