"""Channels in the console: superusers configure them; secrets are write-only.

The form is built from the providers ``channels_app`` registers (through
``rooms.registries``; ``rooms`` never imports the adapters): the provider
choices are those serving the channel's type, each provider has its own
section with its config fields and its secrets, and a save goes through
``channel_upsert``, the service ``manage.py add_channel`` uses, so both
refuse the same things. A small static script (``rooms/channel_form.js``)
narrows the provider choices and shows the chosen provider's section as the
operator picks; without it the server does the same on the next load and
validates on save.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from rooms import registries
from rooms.addresses import is_phone_channel, normalize_channel_address
from rooms.console.actions import audit_record, console_send_test_message
from rooms.console.admin.channel_form import (
    POLICY_FIELDS,
    ChannelForm,
    channel_form_class,
    config_field_name,
    secret_field_name,
    typed_secrets,
)
from rooms.enums import ChannelType
from rooms.errors import RoomKitError
from rooms.models import Channel

_CORE_FIELDS = ["id", "name", "channel_type", "provider", "category", "enabled", "creates_rooms"]
_OTHER_FIELDS = ["config", "capabilities", "new_secrets", "configured_secrets"]


def _webhook_kind(provider: registries.ProviderInfo) -> str:
    if provider.webhook == "token":
        return "the vendor cannot sign its webhooks: the webhook URL carries this channel's secret token"
    if provider.webhook:
        return "signed by the vendor, verified with this channel's secrets"
    return "none (this provider takes no webhooks)"


class TestMessageForm(forms.Form):
    recipient = forms.CharField(
        max_length=255,
        help_text="Address on this channel: a phone number in E.164 (+15551234567) on SMS, RCS, WhatsApp and voice "
        "channels; an email, a chat id elsewhere.",
    )
    text = forms.CharField(max_length=1000, required=False, widget=forms.Textarea(attrs={"rows": 2}))


def channel_webhook_urls(channel: Channel) -> registries.WebhookURLs:
    """The URLs to give the vendor for this channel; empty when its provider takes no webhooks."""
    catalog = registries.provider_catalog()
    if catalog is not None:
        return catalog.webhook_urls(channel)
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    return registries.WebhookURLs(inbound=base + reverse("webhook", args=[channel.id]))


def _without_token(url: str) -> str:
    return url.partition("?")[0] + "?token=…" if url else ""


def test_message_refusal(channel: Channel, recipient: str) -> str | None:
    """Why a test message to ``recipient`` on ``channel`` cannot go out, in words; None when it can.

    On phone-number channels the vendors take E.164 numbers: a short code or a
    sender id (kept as given for inbound senders) is refused here, not by the vendor later.
    """
    catalog = registries.provider_catalog()
    if catalog is not None and channel.provider:
        errors = catalog.settings_errors(
            channel_type=channel.channel_type,
            provider=channel.provider,
            config=channel.config,
            secret_names=channel.secret_names,
        )
        if errors:
            return "not ready to send: " + "; ".join(f"{field}: {message}" for field, message in errors)
    if is_phone_channel(channel.channel_type):
        example = "a phone number in E.164 form, e.g. +15551234567"
        try:
            address = normalize_channel_address(channel.channel_type, channel.config, recipient.strip())
        except RoomKitError as exc:
            return f"{exc.message}; a {channel.channel_type} test message goes to {example}"
        if not address.startswith("+"):
            return f"'{recipient[:40]}' is a short code or sender id, not a phone number; send to {example}"
    return None


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ["id", "name", "channel_type", "category", "provider", "enabled", "webhook"]
    list_filter = ["channel_type", "category", "enabled"]
    search_fields = ["id", "name"]
    actions = ["send_test_message"]
    change_form_template = "admin/rooms/channel/change_form.html"

    class Media:
        js = ["rooms/channel_form.js"]

    def _providers(self) -> list[registries.ProviderInfo]:
        return registries.transport_providers()

    def get_form(self, request: HttpRequest, obj: Channel | None = None, change: bool = False, **kwargs: Any) -> type[forms.Form]:
        # Built per request: providers may be registered after this admin is (tests register their own).
        kwargs["form"] = channel_form_class(self._providers())
        return super().get_form(request, obj, change, **kwargs)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        if initial.get("channel_type") not in ChannelType.values:
            initial.pop("channel_type", None)
        return initial

    def get_readonly_fields(self, request: HttpRequest, obj: Channel | None = None) -> list[str]:
        fields = ["webhook_urls_with_token" if request.user.is_superuser else "webhook_urls", "delivery_policy", "provider_pages"]
        if request.user.is_superuser:
            fields.append("configured_secrets")
        if obj is not None:
            fields.append("id")  # a new id would be a new channel: create one instead
        return fields

    def get_fields(self, request: HttpRequest, obj: Channel | None = None) -> list[str]:
        fields = list(dict.fromkeys(super().get_fields(request, obj)))
        if not request.user.is_superuser:
            # Which secrets are set is itself configuration: superusers only. Others read
            # the effective delivery policy, not the form that edits it.
            # The provider's config reads in the config JSON (the fields are the editor's).
            hidden = {"new_secrets", "configured_secrets", *POLICY_FIELDS}
            fields = [f for f in fields if f not in hidden and not f.startswith(("secret__", "cfg__"))]
        return fields

    def get_fieldsets(self, request: HttpRequest, obj: Channel | None = None) -> list[tuple[str | None, dict[str, Any]]]:
        fields = self.get_fields(request, obj)
        present = set(fields)
        if request.method == "POST":
            chosen = request.POST.get("provider", "")
        else:
            chosen = obj.provider if obj is not None else request.GET.get("provider", "")
        sets: list[tuple[str | None, dict[str, Any]]] = [(None, {"fields": [f for f in _CORE_FIELDS if f in present]})]
        webhook = [f for f in ("webhook_urls_with_token", "webhook_urls") if f in present]
        if obj is not None and webhook:
            sets.append(("Webhooks", {"fields": webhook}))
        if obj is not None and registries.channel_table(obj.provider) is not None:
            sets.append(("At the vendor", {"fields": ["provider_pages"]}))
        for provider in self._providers():
            names = [config_field_name(provider.name, f.name) for f in provider.config_fields]
            names += [secret_field_name(provider.name, s) for s in typed_secrets(provider)]
            names = [n for n in names if n in present]
            if not names:
                continue  # nothing to edit here (or nothing this user may edit)
            classes = ["rk-provider", f"rk-provider-{provider.name}"]
            if provider.name != chosen:
                classes.append("collapse")  # a closed <details>: readable without the script
            sets.append(
                (
                    f"{provider.label} ({provider.name})",
                    {"fields": names, "classes": classes, "description": self._provider_description(request, provider)},
                )
            )
        sets.append(("Other config and secrets", {"fields": [f for f in _OTHER_FIELDS if f in present]}))
        policy = [f for f in fields if f in POLICY_FIELDS or f == "delivery_policy"]
        sets.append(
            (
                "Delivery policy: retry, circuit breaker, rate limits",
                {"fields": policy, "description": "Blank fields use the defaults. All rate limits that are set apply together."},
            )
        )
        return sets

    def _provider_description(self, request: HttpRequest, provider: registries.ProviderInfo) -> str:
        parts = [format_html("Serves: {}.", ", ".join(sorted(provider.channel_types)))]
        if request.user.is_superuser:
            typed = typed_secrets(provider)
            if typed:
                needed = ", ".join(f"{s} ({'required' if s in provider.required_secrets else 'optional'})" for s in typed)
                parts.append(format_html("Secrets: {}.", needed))
        for group in provider.one_of:
            if provider.one_of_types:
                kinds = ", ".join(sorted(provider.one_of_types))
                parts.append(format_html("At least one of: {} ({} channels).", ", ".join(group), kinds))
            else:
                parts.append(format_html("At least one of: {}.", ", ".join(group)))
        parts.append(format_html("Webhooks: {}.", _webhook_kind(provider)))
        return format_html_join(" ", "{}", ((p,) for p in parts))

    @admin.display(description="Effective policy and breaker")
    def delivery_policy(self, obj: Channel | None) -> str:
        if obj is None or obj._state.adding:
            return "—"
        report = registries.channel_policy_report(obj)
        if report is None:
            return "—"
        breaker = report["breaker"]
        state = f"{breaker['state']}, {breaker['failures']} consecutive failure(s)"
        if breaker["opened_at"]:
            state += f", opened at {breaker['opened_at']}"
        if breaker["probe_in_flight"]:
            state += ", probe in flight"
        effective = report["effective"]
        return format_html(
            '<dl class="rk-delivery-policy">'
            "<dt>Retry</dt><dd>{}</dd><dt>Circuit breaker</dt><dd>{}</dd>"
            '<dt>Breaker now</dt><dd class="rk-breaker-state">{}</dd><dt>Rate limits</dt><dd>{}</dd></dl>',
            effective["retry"],
            effective["circuit_breaker"],
            state,
            effective["rate_limit"],
        )

    @admin.display(description="Provider pages")
    def provider_pages(self, obj: Channel | None) -> str:
        offered = registries.channel_table(obj.provider) if obj is not None and not obj._state.adding else None
        if offered is None:
            return "—"
        url = reverse("admin:rooms_channel_provider_table", args=[obj.pk])
        return format_html('<a class="rk-provider-table" href="{}">{}</a>', url, offered[0])

    def provider_table_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The provider's table for this channel (WhatsApp's templates), read from the vendor now."""
        channel = self.get_object(request, unquote(object_id))
        if channel is None:
            raise Http404("unknown channel")
        if not self.has_view_permission(request, channel):
            raise PermissionDenied
        offered = registries.channel_table(channel.provider)
        if offered is None:
            raise Http404("this channel's provider has no such page")
        table = offered[1](channel)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{table.title}: {channel.name or channel.pk}",
            "channel": channel,
            "table": table,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/rooms/channel/provider_table.html", context)

    @admin.display(description="Secrets set")
    def configured_secrets(self, obj: Channel | None) -> str:
        if obj is None or obj._state.adding:
            return "—"
        return ", ".join(obj.secret_names) or "—"

    @admin.display(description="Webhook URL")
    def webhook(self, obj: Channel) -> str:
        urls = channel_webhook_urls(obj)
        if not urls.inbound:
            return "—"
        return format_html("<code>{}</code>", _without_token(urls.inbound) if urls.token_in_url else urls.inbound)

    @admin.display(description="Webhook URLs (paste at the vendor)")
    def webhook_urls(self, obj: Channel | None) -> str:
        return self._webhook_block(obj, show_token=False)

    @admin.display(description="Webhook URLs (paste at the vendor)")
    def webhook_urls_with_token(self, obj: Channel | None) -> str:
        return self._webhook_block(obj, show_token=True)

    def _webhook_block(self, obj: Channel | None, *, show_token: bool) -> str:
        if obj is None or obj._state.adding:
            return "—"
        urls = channel_webhook_urls(obj)
        if not urls.inbound:
            return "— (this channel's provider takes no webhooks)" if obj.provider else "— (no provider)"
        inbound, status = urls.inbound, urls.status
        if urls.token_in_url and not show_token:
            inbound, status = _without_token(inbound), _without_token(status)
        rows = [("Inbound messages", inbound)] + ([("Delivery status callbacks", status)] if status else [])
        block = format_html_join("", '<dt>{}</dt><dd><code class="rk-webhook-url">{}</code></dd>', rows)
        html = format_html('<dl class="rk-webhooks">{}</dl>', block)
        if not urls.token_in_url:
            return html
        rotate = reverse("admin:rooms_channel_rotate_webhook_token", args=[obj.pk])
        if urls.token_missing:
            note = "This channel has no webhook token yet: make one before giving the URL to the vendor."
        elif show_token:
            note = (
                "This vendor does not sign its webhooks: the token in these URLs is the only proof a request comes "
                "from the vendor, so the URLs themselves are the secret. Give them to the vendor only; if they leak, "
                "rotate the token (the old URLs stop working at once)."
            )
        else:
            note = "This vendor does not sign its webhooks: the URLs carry a secret token, shown to superusers only."
        action = format_html(' <a href="{}">Rotate the token…</a>', rotate) if show_token else ""
        return format_html('{}<p class="rk-webhook-token-note"><strong>{}</strong>{}</p>', html, note, action)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Channel | None = None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Channel | None = None) -> bool:
        # Deleting a channel would cascade to its bindings (no detach hook or
        # system event) and its outbox rows, and strip its events' source: a
        # channel is disabled (``enabled``) and detached from rooms instead.
        return False

    def save_model(self, request: HttpRequest, obj: Channel, form: ChannelForm, change: bool) -> None:
        catalog = registries.provider_catalog()
        if catalog is None:
            obj.save()  # without channels_app there is nothing more to check or to save through
            return
        try:
            catalog.save(
                channel_id=obj.id,
                channel_type=obj.channel_type,
                provider=obj.provider,
                config=obj.config,
                secrets=form.secrets_to_set,
                name=obj.name,
                category=obj.category,
                capabilities=obj.capabilities,
                creates_rooms=obj.creates_rooms,
                enabled=obj.enabled,
            )
        except RoomKitError as exc:
            # The form checked the same things; only a concurrent change gets here.
            raise _SaveRefused(exc.message) from exc

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except _SaveRefused as exc:
            self.message_user(request, f"Not saved: {exc}", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any) -> HttpResponse:
        if kwargs.get("add") and not context["adminform"].form.chosen_type():
            # No script needed: a link per type reloads the form with that type's providers.
            context["channel_types"] = ChannelType.choices
        return super().render_change_form(request, context, *args, **kwargs)

    def get_urls(self) -> list[Any]:
        rotate = path(
            "<path:object_id>/rotate-webhook-token/",
            self.admin_site.admin_view(self.rotate_webhook_token_view),
            name="rooms_channel_rotate_webhook_token",
        )
        table = path(
            "<path:object_id>/provider-table/",
            self.admin_site.admin_view(self.provider_table_view),
            name="rooms_channel_provider_table",
        )
        return [rotate, table, *super().get_urls()]

    def rotate_webhook_token_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Confirm, then give the channel a new webhook token (superusers; token-verified providers only)."""
        if not request.user.is_superuser:
            raise PermissionDenied
        channel = self.get_object(request, unquote(object_id))
        catalog = registries.provider_catalog()
        if channel is None or catalog is None:
            raise Http404("unknown channel")
        change_url = reverse("admin:rooms_channel_change", args=[channel.pk])
        if request.method == "POST":
            try:
                with transaction.atomic():
                    catalog.rotate_webhook_token(channel.pk)
                    audit_record(user=request.user, action="rotate_webhook_token", target=f"channel:{channel.pk}")
            except RoomKitError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                done = "New webhook token made: give the vendor the new URLs; the old ones no longer work."
                self.message_user(request, done, messages.WARNING)
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Rotate the webhook token of {channel}",
            "channel": channel,
            "opts": self.model._meta,
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/rooms/channel/rotate_webhook_token.html", context)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not request.user.is_superuser:
            actions.pop("send_test_message", None)
            return actions
        for action in registries.channel_admin_actions():
            # Providers' actions (channels_app registers them): run, audited, their lines shown as messages.
            actions[action.name] = (_run_provider_action(action), action.name, action.description)
        return actions

    @admin.action(description="Send a test message through the delivery path")
    def send_test_message(self, request: HttpRequest, queryset: QuerySet[Channel]) -> HttpResponse | None:
        if not request.user.is_superuser:
            self.message_user(request, "Only superusers send test messages.", messages.ERROR)
            return None
        form = TestMessageForm(request.POST if "recipient" in request.POST else None)
        if form.is_bound and form.is_valid():
            for channel in queryset:
                problem = test_message_refusal(channel, form.cleaned_data["recipient"])
                if problem:
                    self.message_user(request, f"{channel.id}: {problem}", messages.ERROR)
                    continue
                try:
                    result = console_send_test_message(
                        user=request.user,
                        channel_id=channel.id,
                        recipient=form.cleaned_data["recipient"],
                        text=form.cleaned_data["text"],
                    )
                except RoomKitError as exc:
                    self.message_user(request, f"{channel.id}: {exc.message}", messages.ERROR)
                    continue
                self.message_user(
                    request, f"{channel.id}: test message planned ({result.deliveries} delivery) in room {result.room_id}."
                )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Send a test message",
            "channels": queryset,
            "form": form,
            "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/rooms/channel/send_test_message.html", context)


def _run_provider_action(action: registries.ChannelAdminAction) -> Any:
    def run(modeladmin: ChannelAdmin, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
        channels = list(queryset)
        for channel in channels:
            audit_record(user=request.user, action=action.name, target=f"channel:{channel.pk}")
        for level, message in action.run(request.user, channels):
            modeladmin.message_user(request, message, messages.ERROR if level == "error" else messages.INFO)

    return run


class _SaveRefused(Exception):
    """The channel service refused a save the form had accepted (a concurrent change)."""
