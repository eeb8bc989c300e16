"""The Celery application.

With ``REDIS_URL`` set, workers and beat run as separate processes
(``celery -A roomkit_project worker`` / ``beat``). Without it, the same task
functions run in-process (see ``rooms.infra.task_queue``).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "roomkit_project.settings")

app = Celery("roomkit_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
