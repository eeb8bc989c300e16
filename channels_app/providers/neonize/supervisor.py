"""The event source: one long-lived neonize client per ``whatsapp_personal`` channel, kept running.

A ``ChannelRunner`` owns one channel's client on two threads of its own:

- the *run* thread restores the session (``sessions.session_restore``) into a
  private temporary file, builds the client and calls its blocking
  ``connect()``. When that ends without a stop (the dial failed, the phone
  unlinked the device, the Go side gave up) it records the error, waits an
  exponential backoff with jitter (``rooms.infra.backoff``, reset once a
  connection has stayed up ``stable_after`` seconds) and starts again, up to
  ``max_restarts`` (None: for ever);
- the *event* thread handles what the client reports, in order: neonize calls
  back on the Go side's threads, which only queue the event, so the database
  work (``process_inbound``, statuses, health) happens on one thread with one
  connection, and a slow media download never stalls the Go event loop. It
  also beats: health's ``heartbeat_at`` and a session snapshot every
  ``save_interval`` seconds.

Health (state, the pairing QR, last error, restarts, next attempt) is written
to ``WhatsAppPersonalSession`` for the admin. ``Supervisor`` runs the runners
of several channels, and serves their sends (``outbox``).
"""

from __future__ import annotations

import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import close_old_connections
from django.utils import timezone
from neonize.proto import Neonize_pb2 as neonize_proto

from channels_app.models import WhatsAppPersonalState as State
from channels_app.providers.neonize import events as wa_events
from channels_app.providers.neonize import sessions
from channels_app.providers.neonize.client import ClientFactory, WhatsAppClient, jid_to_str, neonize_client
from channels_app.providers.neonize.sessions import SessionUnreadable
from rooms.errors import RoomKitError
from rooms.infra.backoff import backoff_delay

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0


@dataclass(frozen=True)
class RestartPolicy:
    """How a channel's client restarts: ``base``·2ⁿ⁻¹ s (jittered, at most ``maximum``) after the n-th failure in a row."""

    base: float = 2.0
    maximum: float = 300.0
    # Connected this long, the next failure counts as the first again.
    stable_after: float = 120.0
    # Failures in a row before giving up (the state becomes "failed"); None: never give up.
    max_restarts: int | None = None


class ChannelRunner:
    """Keeps one channel's WhatsApp client connected; see the module's docstring."""

    def __init__(
        self,
        channel_id: str,
        *,
        client_factory: ClientFactory = neonize_client,
        policy: RestartPolicy | None = None,
        proxy: str = "",
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        save_interval: float = sessions.SAVE_INTERVAL_SECONDS,
    ) -> None:
        self.channel_id = channel_id
        self.client_factory = client_factory
        self.policy = policy or RestartPolicy()
        self.proxy = proxy
        self.heartbeat_seconds = heartbeat_seconds
        self.save_interval = save_interval
        self._stop = threading.Event()
        # Set when the run thread ends: the event thread drains the queue until then (the run thread waits on it).
        self._run_done = threading.Event()
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._client: WhatsAppClient | None = None
        self._connected = threading.Event()
        self._connected_since: float | None = None
        self._workdir = tempfile.mkdtemp(prefix=f"roomkit-wa-{channel_id[:40]}-")
        os.chmod(self._workdir, 0o700)
        self.database_path = os.path.join(self._workdir, "session.sqlite3")
        self._digest = ""
        self._digest_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        # Rooms whose ephemeral events (our side typing, reading) go back to WhatsApp: room id → chat JID.
        self._watched: dict[str, str] = {}
        self._subscriptions: list[str] = []
        self._read_through: dict[str, int] = {}
        # Why the runner itself stopped the client (the phone logged it out), for the restart's error.
        self._end_reason = ""

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        for target, name in ((self._run, "run"), (self._handle_events, "events")):
            thread = threading.Thread(target=target, name=f"wa-{self.channel_id}-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the client, save its session and wait for both threads; the temporary files go."""
        self._stop.set()
        client = self._client
        if client is not None:
            try:
                client.stop()
            except Exception:  # already stopped on the Go side
                logger.debug("whatsapp_personal %s: stop raised", self.channel_id, exc_info=True)
        for thread in self._threads:
            thread.join(timeout)
        from rooms.realtime import broadcast

        for subscription in self._subscriptions:
            broadcast.unsubscribe_room(subscription)
        shutil.rmtree(self._workdir, ignore_errors=True)

    @property
    def client(self) -> WhatsAppClient | None:
        """The connected client, for sends; None while it is not connected."""
        return self._client if self._connected.is_set() else None

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def _run(self) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                error = self._run_once()
                if self._stop.is_set():
                    break
                since = self._connected_since
                stable = since is not None and time.monotonic() - since >= self.policy.stable_after
                failures = 1 if stable else failures + 1
                if self.policy.max_restarts is not None and failures > self.policy.max_restarts:
                    sessions.health_update(channel_id=self.channel_id, state=State.FAILED, last_error=error, next_attempt_at=None)
                    logger.error("whatsapp_personal %s: giving up after %d failures: %s", self.channel_id, failures - 1, error)
                    return
                delay = backoff_delay(failures, base=self.policy.base, maximum=self.policy.maximum)
                sessions.health_restart_recorded(
                    channel_id=self.channel_id, error=error, next_attempt_at=timezone.now() + timedelta(seconds=delay)
                )
                logger.warning("whatsapp_personal %s: %s; restarting in %.1fs", self.channel_id, error, delay)
                self._stop.wait(delay)
            sessions.health_update(channel_id=self.channel_id, state=State.STOPPED, next_attempt_at=None)
        finally:
            self._run_done.set()
            close_old_connections()

    def _run_once(self) -> str:
        """One client's life: restore, connect (blocks), save. Returns why it ended."""
        self._connected.clear()
        self._connected_since = None
        try:
            restored = sessions.session_restore(channel_id=self.channel_id, path=self.database_path)
        except SessionUnreadable as exc:
            # Not fatal: the device pairs anew (the admin shows a QR) and the row is overwritten.
            restored = False
            sessions.health_update(channel_id=self.channel_id, last_error=str(exc))
        if not restored and os.path.exists(self.database_path):
            os.remove(self.database_path)
        sessions.health_update(channel_id=self.channel_id, state=State.STARTING, next_attempt_at=None)
        try:
            client = self.client_factory(
                channel_id=self.channel_id, database_path=self.database_path, events=self, proxy=self.proxy
            )
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        self._client = client
        self._end_reason = ""
        try:
            client.connect()
            error = self._end_reason or "the connection ended"
        except Exception as exc:  # neonize raises NeonizeError (and the Go side's message) for a failed dial
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self._connected.clear()
            self._client = None
        self._events.join()  # what the client reported before it ended is handled before the session is saved
        self._save_session()
        return error

    def _save_session(self) -> None:
        with self._digest_lock:
            try:
                self._digest = sessions.session_save(
                    channel_id=self.channel_id, path=self.database_path, previous_digest=self._digest
                )
            except Exception:  # a failed snapshot must not stop the client; the next one may succeed
                logger.exception("whatsapp_personal %s: session not saved", self.channel_id)

    # --- ClientEvents: called on neonize's threads; they only queue ----------------------------

    def on_qr(self, code: str) -> None:
        self._events.put(("qr", code))

    def on_paired(self, account: str) -> None:
        self._events.put(("paired", account))

    def on_pair_failed(self, error: str) -> None:
        self._events.put(("pair_failed", error))

    def on_connected(self) -> None:
        self._connected_since = time.monotonic()
        self._connected.set()
        self._events.put(("connected", None))

    def on_disconnected(self) -> None:
        self._connected.clear()
        self._events.put(("disconnected", None))

    def on_logged_out(self, reason: str) -> None:
        self._connected.clear()
        self._events.put(("logged_out", reason))

    def on_message(self, event: neonize_proto.Message) -> None:
        self._events.put(("message", event))

    def on_receipt(self, event: neonize_proto.Receipt) -> None:
        self._events.put(("receipt", event))

    def on_chat_presence(self, event: neonize_proto.ChatPresence) -> None:
        self._events.put(("chat_presence", event))

    # --- the event thread -----------------------------------------------------------------

    def _handle_events(self) -> None:
        last_save = time.monotonic()
        try:
            while not (self._run_done.is_set() and self._events.empty()):
                try:
                    kind, payload = self._events.get(timeout=self.heartbeat_seconds)
                except queue.Empty:
                    self._beat()
                    if time.monotonic() - last_save >= self.save_interval and self._client is not None:
                        self._save_session()
                        last_save = time.monotonic()
                    continue
                try:
                    self._handle(kind, payload)
                except Exception:
                    # One bad event must not stop the channel: it is logged and the next one handled.
                    logger.exception("whatsapp_personal %s: %s event not handled", self.channel_id, kind)
                finally:
                    self._events.task_done()
        finally:
            close_old_connections()

    def _beat(self) -> None:
        if not self._stop.is_set():
            sessions.health_update(channel_id=self.channel_id)

    def _handle(self, kind: str, payload: Any) -> None:
        channel_id = self.channel_id
        if kind == "qr":
            sessions.health_update(channel_id=channel_id, state=State.PAIRING, qr_code=str(payload)[:2000])
        elif kind == "paired":
            sessions.health_update(channel_id=channel_id, account=str(payload)[:255], qr_code="")
            self._save_session()
        elif kind == "pair_failed":
            sessions.health_update(channel_id=channel_id, last_error=f"pairing failed: {payload}"[:2000])
        elif kind == "connected":
            now = timezone.now()
            sessions.health_update(channel_id=channel_id, state=State.CONNECTED, connected_at=now, next_attempt_at=None)
            self._save_session()
        elif kind == "disconnected":
            # whatsmeow reconnects by itself; the state says so until it is back.
            sessions.health_update(channel_id=channel_id, state=State.BACKING_OFF, last_error="disconnected; reconnecting")
        elif kind == "logged_out":
            self._logged_out(str(payload))
        elif kind == "message":
            self._message(payload)
        elif kind == "receipt":
            from channels_app.services import delivery_apply_status
            from rooms.selectors import get_channel

            channel = get_channel(channel_id)
            for update in wa_events.status_updates(payload):
                delivery_apply_status(channel=channel, update=update)
        elif kind == "chat_presence":
            self._chat_presence(payload)
        elif kind == "room_ephemeral":
            self._room_ephemeral(*payload)

    def _logged_out(self, reason: str) -> None:
        """The phone unlinked this device: the session is worthless; restart to pair anew (a new QR)."""
        sessions.session_forget(channel_id=self.channel_id)
        with self._digest_lock:
            self._digest = ""
        self._end_reason = f"logged out: {reason}"
        sessions.health_update(channel_id=self.channel_id, state=State.LOGGED_OUT, last_error=self._end_reason)
        client = self._client
        if client is not None:
            client.stop()
        if os.path.exists(self.database_path):
            os.remove(self.database_path)

    def _message(self, event: neonize_proto.Message) -> None:
        from rooms.inbound import process_inbound

        client = self._client
        if client is None:
            # Media need the client; a message that arrives as it stops is sent again by WhatsApp after reconnect.
            return
        message = wa_events.inbound_message(channel_id=self.channel_id, event=event, client=client)
        if message is None:
            return
        try:
            result = process_inbound(message)
        except RoomKitError as exc:
            logger.warning("whatsapp_personal %s: message %s refused: %s", self.channel_id, event.Info.ID, exc)
            return
        if result.room_id and result.room_id not in self._watched:
            self._watch_room(result.room_id, message.sender)

    def _chat_presence(self, event: neonize_proto.ChatPresence) -> None:
        from rooms.models import ChannelBinding
        from rooms.realtime import broadcast

        chat = jid_to_str(event.MessageSource.Chat)
        binding = (
            ChannelBinding.objects.filter(channel_id=self.channel_id, address=chat, participant__isnull=False)
            .order_by("-created_at")
            .values("room_id", "participant_id", "participant__display_name")
            .first()
        )
        if binding is None:
            return
        broadcast.publish_typing(
            binding["room_id"],
            binding["participant_id"],
            typing=wa_events.is_typing(event),
            display_name=binding["participant__display_name"] or "",
        )

    # --- our side's typing and reading, back to WhatsApp -------------------------------------------

    def _watch_room(self, room_id: str, chat: str) -> None:
        from rooms.realtime import broadcast

        self._watched[room_id] = chat

        def relay(event: broadcast.EphemeralEvent) -> None:
            if event.kind in ("typing_start", "typing_stop", "read_receipt"):
                self._events.put(("room_ephemeral", (event.room_id, event.kind, dict(event.data))))

        self._subscriptions.append(broadcast.subscribe_room(room_id, relay))

    def _room_ephemeral(self, room_id: str, kind: str, data: dict[str, Any]) -> None:
        from rooms.models import ChannelBinding, RoomEvent

        client, chat = self.client, self._watched.get(room_id)
        participant_id = data.get("participant_id")
        if client is None or chat is None or not participant_id:
            return
        customer = ChannelBinding.objects.filter(
            room_id=room_id, channel_id=self.channel_id, address=chat, participant_id=participant_id
        ).exists()
        if customer:
            return  # the customer's own typing and reading came from WhatsApp: nothing to send back
        if kind in ("typing_start", "typing_stop"):
            client.send_chat_presence(chat, composing=kind == "typing_start")
            return
        seq = data.get("seq")
        if not isinstance(seq, int):
            return
        # Everything the customer sent up to what our side has read is read on their phone too (blue ticks).
        # Which seq was already marked is kept in memory: after a restart marking again is harmless.
        after = self._read_through.get(room_id, 0)
        if seq <= after:
            return
        message_ids = list(
            RoomEvent.objects.filter(
                room_id=room_id, source_channel_id=self.channel_id, seq__gt=after, seq__lte=seq, provider_message_id__isnull=False
            )
            .order_by("seq")
            .values_list("provider_message_id", flat=True)
        )
        if message_ids:
            client.mark_read(chat=chat, sender=chat, message_ids=message_ids)
        self._read_through[room_id] = seq


class Supervisor:
    """The runners of several channels in one process, and their sends (see ``outbox``)."""

    def __init__(self, channel_ids: list[str], **runner_options: Any) -> None:
        self.runners = {channel_id: ChannelRunner(channel_id, **runner_options) for channel_id in channel_ids}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        from channels_app.providers.neonize import outbox

        for channel_id, runner in self.runners.items():
            runner.start()
            outbox.register_local_runner(runner)
            if outbox.shared_queue_available():
                thread = threading.Thread(
                    target=outbox.serve_sends, args=(runner, self._stop), name=f"wa-{channel_id}-sends", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        from channels_app.providers.neonize import outbox

        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        for runner in self.runners.values():
            outbox.unregister_local_runner(runner)
            runner.stop(timeout)
