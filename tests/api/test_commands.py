"""Access commands: create_api_token (API bearer tokens) and ensure_admin (operator login)."""

from __future__ import annotations

import stat
import tempfile
from io import StringIO
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import TestCase, override_settings

from rooms.models import APIToken


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


class CreateAPITokenTests(TestCase):
    def test_creates_the_user_and_prints_a_working_token(self) -> None:
        raw = run("create_api_token", "crm-bot").strip()

        self.assertTrue(raw.startswith("rk_"))
        self.assertGreaterEqual(len(raw), 40)
        user = get_user_model().objects.get(username="crm-bot")
        token = APIToken.objects.get(user=user)
        self.assertNotEqual(token.key_hash, raw, "only a hash is stored")
        self.assertNotIn(raw, token.key_hash)
        self.assertEqual(self.client.get("/api/v1/rooms", headers={"Authorization": f"Bearer {raw}"}).status_code, 200)

    def test_second_token_for_the_same_user_is_new_and_both_work(self) -> None:
        first = run("create_api_token", "crm-bot", "--name", "prod").strip()
        second = run("create_api_token", "crm-bot", "--name", "staging").strip()

        self.assertNotEqual(first, second)
        self.assertEqual(get_user_model().objects.filter(username="crm-bot").count(), 1)
        self.assertEqual(sorted(APIToken.objects.values_list("name", flat=True)), ["prod", "staging"])
        for raw in (first, second):
            self.assertEqual(self.client.get("/api/v1/rooms", headers={"Authorization": f"Bearer {raw}"}).status_code, 200)

    def test_the_token_user_cannot_log_in_to_the_console(self) -> None:
        run("create_api_token", "crm-bot")

        user = get_user_model().objects.get(username="crm-bot")
        self.assertFalse(user.is_staff or user.is_superuser)
        self.assertFalse(self.client.login(username="crm-bot", password=""))


# The default PBKDF2 costs ~0.3 s per hash; the command's behaviour does not depend on it.
@override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
class EnsureAdminTests(TestCase):
    def setUp(self) -> None:
        # The command keeps the password next to the project; never touch the real one.
        tmp = self.enterContext(tempfile.TemporaryDirectory())
        self.base = Path(tmp)
        self.enterContext(override_settings(BASE_DIR=self.base))

    def password_from(self, out: str) -> str:
        self.assertIn("admin login created: admin / ", out)
        return out.strip().rsplit(" / ", 1)[1]

    def test_creates_a_superuser_with_a_generated_password(self) -> None:
        password = self.password_from(run("ensure_admin"))

        user = get_user_model().objects.get(username="admin")
        self.assertTrue(user.is_superuser and user.is_staff)
        self.assertTrue(user.check_password(password))
        self.assertGreaterEqual(len(password), 12)
        kept = self.base / ".admin_password"
        self.assertEqual(kept.read_text(), password)
        self.assertEqual(stat.S_IMODE(kept.stat().st_mode), 0o600)

    def test_the_password_can_log_in_to_the_admin(self) -> None:
        password = self.password_from(run("ensure_admin"))

        self.assertTrue(self.client.login(username="admin", password=password))
        self.assertEqual(self.client.get("/admin/").status_code, 200)

    def test_each_install_gets_a_different_password(self) -> None:
        first = self.password_from(run("ensure_admin"))
        get_user_model().objects.filter(username="admin").delete()
        (self.base / ".admin_password").unlink()

        second = self.password_from(run("ensure_admin"))

        self.assertNotEqual(first, second)
        self.assertNotIn(first.lower(), {"admin", "password", "changeme"})

    def test_second_run_keeps_the_login_and_prints_it_again(self) -> None:
        password = self.password_from(run("ensure_admin"))

        out = run("ensure_admin")

        self.assertIn(f"admin login: admin / {password}", out)
        self.assertEqual(get_user_model().objects.filter(username="admin").count(), 1)
        self.assertTrue(get_user_model().objects.get(username="admin").check_password(password))

    def test_existing_login_without_a_kept_password_is_left_alone(self) -> None:
        get_user_model().objects.create_superuser("admin", "", "chosen-by-operator-123")

        out = run("ensure_admin")

        self.assertIn("changepassword", out)
        self.assertFalse((self.base / ".admin_password").exists())
        self.assertTrue(get_user_model().objects.get(username="admin").check_password("chosen-by-operator-123"))
