from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class RoomsConfig(AppConfig):
    name = "rooms"
    verbose_name = "Rooms"

    def ready(self) -> None:
        from rooms import selectors  # noqa: F401  (connects cache-invalidation signals)
        from rooms.console import admin, inbox_hooks  # noqa: F401  (the admin lives with the console; the inbox's hook)

        # Every installed app may define hooks in a hooks.py module.
        autodiscover_modules("hooks")
