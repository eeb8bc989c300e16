"""The outbox in the console: every delivery, and the dead letters an operator sends again.

A delivery row is the truth of what was owed to a channel: the admin never
adds, edits or deletes one. A failed or dead-lettered delivery is retried
through the console action ``retry_delivery`` (registered by ``channels_app``,
which owns the retry rules; ``rooms`` does not import it), one by one or for
a whole selection, each audited like any room action.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from rooms.console import actions as console
from rooms.enums import DeliveryStatus
from rooms.errors import RoomKitError
from rooms.models import Delivery

RETRYABLE = frozenset({DeliveryStatus.FAILED, DeliveryStatus.DEAD})
# One action retries at most this many rows: each is its own transaction and audit row.
MAX_BULK_RETRY = 500


@dataclass
class RetryOutcome:
    """Which deliveries were queued again, and which were refused (with the service's reason)."""

    queued: list[int] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    skipped: int = 0


def console_retry_deliveries(*, user: AbstractBaseUser, delivery_ids: list[int]) -> RetryOutcome:
    """Send each delivery again through the console action ``retry_delivery``, one transaction each.

    The action is ``channels_app``'s (``delivery_retry``: only failed or dead rows go back to
    pending); each retry is audited, and a refused one changes nothing and is reported.
    """
    outcome = RetryOutcome()
    rows = list(Delivery.objects.filter(pk__in=delivery_ids).order_by("pk").values_list("pk", "event__room_id"))
    outcome.skipped = max(0, len(rows) - MAX_BULK_RETRY)
    for delivery_id, room_id in rows[:MAX_BULK_RETRY]:
        try:
            params = {"delivery": str(delivery_id)}
            console.console_room_action(user=user, room_id=room_id, action="retry_delivery", params=params)
        except RoomKitError as exc:
            outcome.refused.append((delivery_id, exc.message))
        else:
            outcome.queued.append(delivery_id)
    return outcome


class DeadLetterFilter(admin.SimpleListFilter):
    """Deliveries that will not be sent unless an operator retries them."""

    title = "dead letters"
    parameter_name = "dead_letters"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            ("yes", "Dead or failed"),
            ("dead", "Dead (retries exhausted)"),
            ("failed", "Failed (refused, not retryable by itself)"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> QuerySet[Delivery]:
        value = self.value()
        if value == "yes":
            return queryset.filter(status__in=RETRYABLE)
        if value in RETRYABLE:
            return queryset.filter(status=value)
        return queryset


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "room_link",
        "channel",
        "recipient",
        "status",
        "attempts",
        "error_code",
        "short_error",
        "provider_message_id",
        "sent_as",
        "segments",
        "updated_at",
    ]
    list_filter = [DeadLetterFilter, "status", "channel"]
    list_select_related = ["event", "channel"]
    search_fields = ["=id", "provider_message_id", "recipient", "error_code"]
    actions = ["retry_deliveries"]
    fields = [
        "event",
        "channel",
        "binding",
        "recipient",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "error_code",
        "provider_message_id",
        "sent_as",
        "segments",
        "sent_at",
        "created_at",
        "updated_at",
        "content",
    ]
    readonly_fields = fields
    change_form_template = "admin/rooms/delivery/change_form.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # planned by the inbound path

    def has_change_permission(self, request: HttpRequest, obj: Delivery | None = None) -> bool:
        return False  # settled by the delivery service; retried with the action below

    def has_delete_permission(self, request: HttpRequest, obj: Delivery | None = None) -> bool:
        return False  # the outbox row is the delivery's truth; a failed one is retried, not removed

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return console.can_operate(request.user)

    def get_list_display(self, request: HttpRequest) -> list[str]:
        columns = list(super().get_list_display(request))
        return [*columns, "retry_link"] if self.has_operate_permission(request) else columns

    @admin.display(description="room", ordering="event__room_id")
    def room_link(self, obj: Delivery) -> str:
        room_id = obj.event.room_id
        return format_html('<a href="{}">{}</a>', reverse("admin:rooms_room_console", args=[room_id]), room_id)

    @admin.display(description="last error")
    def short_error(self, obj: Delivery) -> str:
        return Truncator(obj.last_error).chars(80)

    @admin.display(description="")
    def retry_link(self, obj: Delivery) -> str:
        if obj.status not in RETRYABLE:
            return ""
        return format_html('<a href="{}">Retry…</a>', reverse("admin:rooms_delivery_retry", args=[obj.pk]))

    @admin.action(description="Retry the selected failed or dead deliveries", permissions=["operate"])
    def retry_deliveries(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        if not self.has_operate_permission(request):
            raise PermissionDenied
        ids = list(queryset.values_list("pk", flat=True))
        self._report(request, console_retry_deliveries(user=request.user, delivery_ids=ids))

    def _report(self, request: HttpRequest, outcome: RetryOutcome) -> None:
        if outcome.queued:
            n = len(outcome.queued)
            listed = ", ".join(str(pk) for pk in outcome.queued[:50]) + (" …" if n > 50 else "")
            self.message_user(request, f"{n} deliver{'y' if n == 1 else 'ies'} queued again: {listed}.", messages.SUCCESS)
        if outcome.refused:
            n = len(outcome.refused)
            listed = "; ".join(f"{pk}: {reason}" for pk, reason in outcome.refused[:20]) + (" …" if n > 20 else "")
            self.message_user(request, f"{n} refused: {listed}", messages.WARNING)
        if outcome.skipped:
            self.message_user(
                request, f"{outcome.skipped} not retried: at most {MAX_BULK_RETRY} at a time, run it again.", messages.WARNING
            )
        if not (outcome.queued or outcome.refused or outcome.skipped):
            self.message_user(request, "No delivery retried.", messages.WARNING)

    def get_urls(self) -> list[Any]:
        retry = path("<path:object_id>/retry/", self.admin_site.admin_view(self.retry_view), name="rooms_delivery_retry")
        return [retry, *super().get_urls()]

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """One delivery: confirm (GET), then send it again (POST)."""
        if not self.has_operate_permission(request):
            raise PermissionDenied
        delivery = self.get_queryset(request).select_related("event", "channel").filter(pk=unquote(object_id)).first()
        if delivery is None:
            raise Http404("unknown delivery")
        if request.method == "POST":
            self._report(request, console_retry_deliveries(user=request.user, delivery_ids=[delivery.pk]))
            return HttpResponseRedirect(reverse("admin:rooms_delivery_changelist") + "?dead_letters=yes")
        context = {
            **self.admin_site.each_context(request),
            "title": f"Retry delivery {delivery.pk}",
            "delivery": delivery,
            "retryable": delivery.status in RETRYABLE,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/rooms/delivery/retry.html", context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        delivery = Delivery.objects.filter(pk=unquote(object_id)).only("status").first() if object_id.isdigit() else None
        extra = {"can_retry": delivery is not None and delivery.status in RETRYABLE and self.has_operate_permission(request)}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})
