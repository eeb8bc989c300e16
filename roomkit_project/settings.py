"""Settings for RoomKit Django, read from the environment in this one place.

Embedded default (no variables set): SQLite, the in-memory channel layer and
background tasks in-process. With ``DATABASE_URL`` and ``REDIS_URL``: PostgreSQL,
channels-redis and Celery workers/beat, for any number of processes.
"""

from __future__ import annotations

import os
import secrets
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def _env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _load_secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once into a local file."""
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    path = BASE_DIR / ".secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(50)
        # O_EXCL: two processes starting at once must agree on one key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(key)
        return key


SECRET_KEY = _load_secret_key()
DEBUG = _env_bool("DEBUG", False)
PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h] or ["*"]
CSRF_TRUSTED_ORIGINS = [PUBLIC_BASE_URL] + [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]
# Pages that may open this site's WebSockets (cross-site WebSocket hijacking):
# PUBLIC_BASE_URL's origin, any listed here, and the socket's own host
# (roomkit_project.ws_origin). "*" allows every origin.
ROOMKIT_WS_ALLOWED_ORIGINS = ["{0.scheme}://{0.netloc}".format(urlsplit(PUBLIC_BASE_URL))] + [
    o.strip() for o in os.environ.get("ROOMKIT_WS_ALLOWED_ORIGINS", "").split(",") if o.strip()
]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    # django-ninja's templates and static files: the API docs page served
    # from this site (no CDN).
    "ninja",
    "django_celery_beat",
    # htmx for the operators' inbox (its script is served from this site).
    "django_htmx",
    "rooms",
    "channels_app",
    "agents",
    "voice",
]

MIDDLEWARE = [
    "roomkit_project.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every response that has none of its own (the
    # admin, the API docs): django-csp, with this host's WebSockets added.
    "roomkit_project.middleware.SitePolicyMiddleware",
    # Static files (the admin's CSS/JS) straight from the app server: no
    # separate web server is needed for the embedded default.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # request.htmx: the inbox answers its own partial requests with fragments.
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "roomkit_project.urls"
ASGI_APPLICATION = "roomkit_project.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ----------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=600)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0 if _env_bool("SQLITE_NO_PERSIST") else 600
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE: a writer takes the lock at BEGIN, so concurrent writers
        # queue on busy_timeout instead of failing on a read->write upgrade.
        "transaction_mode": "IMMEDIATE",
        "timeout": 60,
        # WAL + synchronous=NORMAL: commits survive a process crash and readers
        # never block the writer.
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=60000; PRAGMA foreign_keys=ON;"
        ),
    }
    # A file, not :memory:, so tests can start other processes on the same
    # database; one per run, so parallel runs do not trample each other.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f"test_db_{os.getpid()}.sqlite3")}
else:
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer, Celery ---------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # channels-redis with a fix for receives cancelled across event loops.
            "BACKEND": "rooms.realtime.channel_layer.RoomKitRedisChannelLayer",
            "CONFIG": {
                # redis-py 8 defaults socket_timeout to 5 s; channels-redis
                # blocks on BZPOPMIN for longer than that, so an idle socket
                # would be dropped. None = wait as long as the pop does.
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                # All of a process's sockets and room hubs share one inbox key in
                # Redis, and channels-redis silently skips a group member whose
                # inbox holds `capacity` messages: it must hold a burst of the
                # whole process's traffic (streamed AI chunks included), not one
                # socket's. Messages still expire after `expiry` seconds.
                "capacity": _env_int("ROOMKIT_CHANNEL_LAYER_CAPACITY", 100_000),
                "expiry": 60,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "rooms.realtime.channel_layer.RoomKitInMemoryChannelLayer"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# A task's message is acknowledged when the task has run, not when a worker
# takes it: a worker that dies first leaves the message to be delivered again.
CELERY_TASK_ACKS_LATE = True
# …and when a pool process dies under a task (SIGKILL, the OOM killer), its
# parent puts the message back at once instead of acknowledging it as failed.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Redis has no acknowledgements of its own: a message a worker took and never
# acknowledged (the whole worker died) is visible again after this many
# seconds. Delayed retries wait in the worker that took them, unacknowledged,
# so no countdown we give the broker may come near it (channels_app.services
# leaves longer waits to the outbox sweeper), or a waiting retry would be
# handed to a second worker. A task found twice is harmless (the delivery row
# is claimed once); the sweeper, not this timeout, recovers a dead worker's
# deliveries (ROOMKIT_DELIVERY_STUCK_SECONDS).
ROOMKIT_CELERY_VISIBILITY_TIMEOUT = _env_int("ROOMKIT_CELERY_VISIBILITY_TIMEOUT", 3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": ROOMKIT_CELERY_VISIBILITY_TIMEOUT}
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "channels_app.tasks.*": {"queue": "deliveries"},
    "agents.tasks.*": {"queue": "ai"},
}
# The outbox: a delivery left in "sending" this long had a worker die under it
# (no send takes that long: providers' HTTP timeouts are seconds), and the
# sweeper, every ROOMKIT_OUTBOX_SWEEP_SECONDS, sends it again with the same
# idempotency key. Keep it above the longest provider timeout.
ROOMKIT_DELIVERY_STUCK_SECONDS = _env_int("ROOMKIT_DELIVERY_STUCK_SECONDS", 300)
ROOMKIT_OUTBOX_SWEEP_SECONDS = _env_int("ROOMKIT_OUTBOX_SWEEP_SECONDS", 15)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "sweep-rooms": {"task": "rooms.tasks.sweep_rooms_task", "schedule": 30.0},
    "sweep-outbox": {"task": "channels_app.tasks.sweep_outbox_task", "schedule": float(ROOMKIT_OUTBOX_SWEEP_SECONDS)},
    "sweep-generations": {"task": "agents.tasks.sweep_generations_task", "schedule": 30.0},
    "expire-recordings": {"task": "voice.tasks.expire_recordings_task", "schedule": 3600.0},
}
CELERY_TIMEZONE = "UTC"
# "celery" with REDIS_URL, else "thread" (an in-process worker pool). The test
# runner switches to "inline" so tests see the effects of on_commit work.
ROOMKIT_TASK_MODE = os.environ.get("ROOMKIT_TASK_MODE") or ("celery" if REDIS_URL else "thread")

# --- Auth, i18n, static --------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Serve from the apps' static folders without a collectstatic step.
WHITENOISE_USE_FINDERS = True
# STATIC_ROOT only exists after collectstatic; the finders serve without it.
warnings.filterwarnings("ignore", message="No directory at", module="django.core.handlers.base")
MEDIA_URL = "media/"
# Uploaded chat attachments (served by channels_app.webchat.views.media_file, not a web server).
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or BASE_DIR / "media")

# --- Content-Security-Policy (django-csp) -------------------------------------
# Pages run only this site's own scripts and styles (no inline code); images
# and media in the console may come from the providers' URLs.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "https:", "http:"],
        "media-src": ["'self'", "blob:", "https:", "http:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# --- RoomKit -----------------------------------------------------------------
# Threads per server process that run HTTP requests (roomkit_project.http_handler):
# the most requests one process serves at once, and the most database connections it holds.
ROOMKIT_HTTP_THREADS = _env_int("ROOMKIT_HTTP_THREADS", 16)
# Vendors' webhooks (machines, not browsers) skip the browser middleware: sessions, CSRF,
# auth, messages, static files, CSP (roomkit_project.http_handler).
ROOMKIT_LEAN_PATH_PREFIXES = ("/webhooks/",)
ROOMKIT_LEAN_MIDDLEWARE = (
    "roomkit_project.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
)
# Call recordings (voice channels with "record": true) are deleted after this many days (0: kept).
ROOMKIT_RECORDING_RETENTION_DAYS = _env_int("ROOMKIT_RECORDING_RETENTION_DAYS", 30)
# The ASGI server `manage.py serve` runs: "daphne" or "uvicorn".
ROOMKIT_SERVER = os.environ.get("ROOMKIT_SERVER", "daphne")
ROOMKIT_MAX_BODY_BYTES = _env_int("ROOMKIT_MAX_BODY_BYTES", 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = ROOMKIT_MAX_BODY_BYTES
# Chat image attachments: the largest file accepted by POST /api/v1/chat/uploads.
ROOMKIT_MAX_UPLOAD_BYTES = _env_int("ROOMKIT_MAX_UPLOAD_BYTES", 5 * 1024 * 1024)
# Upload endpoints: their body may be as large as ROOMKIT_MAX_UPLOAD_BYTES plus
# multipart framing instead of ROOMKIT_MAX_BODY_BYTES (roomkit_project.middleware).
ROOMKIT_UPLOAD_PATHS = ("/api/v1/chat/uploads",)
ROOMKIT_MAX_CHAIN_DEPTH = _env_int("ROOMKIT_MAX_CHAIN_DEPTH", 5)
# Group commit (rooms.inbound.group_commit): messages arriving together in one process
# share a transaction. Off only to compare, or to debug one message at a time.
ROOMKIT_GROUP_COMMIT = _env_bool("ROOMKIT_GROUP_COMMIT", True)
ROOMKIT_HOOK_TIMEOUT_SECONDS = float(os.environ.get("ROOMKIT_HOOK_TIMEOUT_SECONDS", "5"))
ROOMKIT_IDENTITY_RESOLVERS = ["rooms.inbound.identity.AddressBookResolver"]
ROOMKIT_CHAT_TOKEN_MAX_AGE = _env_int("ROOMKIT_CHAT_TOKEN_MAX_AGE", 7 * 24 * 3600)
ROOMKIT_WEBCHAT_CHANNEL_ID = os.environ.get("ROOMKIT_WEBCHAT_CHANNEL_ID", "webchat")
# The offline scripted demo agent's pace (agents.providers.scripted): a pause before its
# first word and between words, so its replies visibly stream like a model's. An agent's
# provider_config (first_token_delay_ms, word_delay_ms) overrides these; tests set 0.
ROOMKIT_SCRIPTED_FIRST_TOKEN_DELAY_MS = _env_int("ROOMKIT_SCRIPTED_FIRST_TOKEN_DELAY_MS", 400)
ROOMKIT_SCRIPTED_WORD_DELAY_MS = _env_int("ROOMKIT_SCRIPTED_WORD_DELAY_MS", 45)
# The browser voice channel /voice/ talks to when no ?channel= names another (seed_demo makes it).
ROOMKIT_VOICE_CHANNEL_ID = os.environ.get("ROOMKIT_VOICE_CHANNEL_ID", "voice")
# Abuse limits of the open chat endpoints (``limits`` syntax: "20/minute",
# "100 per hour"; empty turns one off). Sessions per client address; uploads
# per session over the token's lifetime.
ROOMKIT_CHAT_SESSION_RATE = os.environ.get("ROOMKIT_CHAT_SESSION_RATE", "20/minute")
ROOMKIT_CHAT_UPLOADS_PER_SESSION = _env_int("ROOMKIT_CHAT_UPLOADS_PER_SESSION", 50)
# The header a trusted reverse proxy puts the client's address in (e.g.
# X-Forwarded-For); unset: the socket's peer address (REMOTE_ADDR).
ROOMKIT_CLIENT_IP_HEADER = os.environ.get("ROOMKIT_CLIENT_IP_HEADER", "")
ROOMKIT_API_CHANNEL_ID = "api"
# Chat socket rate limits (channels_app.socket_limits), in the `limits` notation;
# an empty value turns one off. Every message may start a (paid) AI reply.
ROOMKIT_CHAT_FRAME_RATE = os.environ.get("ROOMKIT_CHAT_FRAME_RATE", "30/second;600/minute")
ROOMKIT_CHAT_MESSAGE_RATE = os.environ.get("ROOMKIT_CHAT_MESSAGE_RATE", "20/10 seconds;60/minute")
ROOMKIT_CHAT_PARTICIPANT_MESSAGE_RATE = os.environ.get("ROOMKIT_CHAT_PARTICIPANT_MESSAGE_RATE", "30/10 seconds;90/minute")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        # One line per outbound request is noise; failures are logged by the
        # delivery service with their reason.
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
    },
}

TEST_RUNNER = "tests.runner.RoomKitTestRunner"
