"""Event content as safe HTML for the console: text escaped, rich HTML sanitized, media previewed.

Nothing a participant sent reaches the page unescaped: text goes through
Django's escaping, HTML bodies through ``nh3`` (an allow-list sanitizer), and
media URLs and links are used only when they are absolute http(s) URLs or this
site's own paths, never anything a browser would read as another host.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import nh3
from django.utils.html import format_html, format_html_join, linebreaks
from django.utils.safestring import SafeString, mark_safe

from rooms.content.kinds import content_text

# Tags an operator needs to read a rich message; scripts, styles, frames and
# event handlers are dropped by nh3 whatever this list says.
RICH_TAGS = {
    "a", "b", "blockquote", "br", "code", "em", "h1", "h2", "h3", "h4", "hr", "i", "li", "ol", "p", "pre",
    "s", "strong", "sub", "sup", "table", "tbody", "td", "th", "thead", "tr", "u", "ul",
}  # fmt: skip
RICH_ATTRIBUTES = {"a": {"href", "title"}}
# Backslashes (read as "/" in URLs), whitespace and control characters
# (dropped or trimmed by browsers before parsing): none belongs in a media URL.
_UNSAFE_URL_CHARS = re.compile(r"[\\\x00-\x20\x7f-\x9f]")


def safe_media_url(url: Any) -> str | None:
    """``url`` if a browser would fetch it over http(s) from the host it names, or from this site; else None.

    Absolute ``http://`` / ``https://`` URLs with a host, and paths on this
    site (``/media/…``). Refused: other schemes (``javascript:``, ``data:``),
    and anything a browser would read as another host than it shows or
    as a scheme-relative URL: ``//evil``, ``/\\evil`` (browsers treat ``\\``
    as ``/``), or either with tabs, newlines or other control characters in
    between (browsers drop those before parsing).
    """
    if not isinstance(url, str) or not url or len(url) > 2048:
        return None
    if _UNSAFE_URL_CHARS.search(url):
        return None
    if url.startswith("/"):
        return None if url.startswith("//") else url
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not url[len(parts.scheme) :].startswith("://"):
        return None
    if not parts.hostname:
        return None
    return url


def sanitize_html(body: str) -> str:
    """Rich HTML cleaned to an allow-list; links get ``rel="noopener noreferrer"``.

    nh3 passes relative links through as written; a link that a browser
    would read as another host (``//evil``, ``/\\evil``) loses its ``href``.
    """
    return nh3.clean(
        body,
        tags=RICH_TAGS,
        attributes=RICH_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        attribute_filter=_safe_link,
    )


def _safe_link(tag: str, attribute: str, value: str) -> str | None:
    if tag != "a" or attribute != "href":
        return value
    if value[:7].lower() == "mailto:" and not _UNSAFE_URL_CHARS.search(value):
        return value
    return safe_media_url(value)


def render_content(content: dict[str, Any]) -> SafeString:
    """One event's content as HTML that is safe to put in the admin page."""
    kind = content.get("type")
    if kind == "text" or kind == "system":
        return mark_safe(linebreaks(str(content.get("body", "")), autoescape=True))
    if kind == "rich":
        body = str(content.get("body", ""))
        if content.get("format") == "html":
            return format_html('<div class="rk-rich">{}</div>', mark_safe(sanitize_html(body)))
        return mark_safe(linebreaks(body, autoescape=True))
    if kind == "media":
        return _media(content)
    if kind == "audio":
        return _player("audio", content, content.get("transcript"))
    if kind == "video":
        return _player("video", content, content.get("caption"))
    if kind == "composite":
        parts = [render_content(p) for p in content.get("parts", []) if isinstance(p, dict)]
        return format_html_join("", "{}", ((p,) for p in parts))
    return mark_safe(linebreaks(content_text(content), autoescape=True))


def _media(content: dict[str, Any]) -> SafeString:
    url = safe_media_url(content.get("url"))
    mime = str(content.get("mime_type", ""))
    label = content.get("filename") or content.get("url") or "attachment"
    caption = content.get("caption") or ""
    if url is None:
        return format_html('<p class="rk-media-unsafe">[Media: {} — link not shown]</p>', label)
    if mime.startswith("image/"):
        preview = format_html(
            '<a href="{}" target="_blank" rel="noopener noreferrer"><img class="rk-image" src="{}" alt="{}" loading="lazy"></a>',
            url,
            url,
            caption or label,
        )
    elif mime.startswith("audio/"):
        return _player("audio", content, caption)
    elif mime.startswith("video/"):
        return _player("video", content, caption)
    else:
        preview = format_html('<a href="{}" target="_blank" rel="noopener noreferrer">{}</a> ({})', url, label, mime)
    return format_html("{}{}", preview, format_html('<p class="rk-caption">{}</p>', caption) if caption else "")


def _player(tag: str, content: dict[str, Any], text: Any) -> SafeString:
    url = safe_media_url(content.get("url"))
    extra = format_html('<p class="rk-caption">{}</p>', text) if text else ""
    if url is None:
        return format_html('<p class="rk-media-unsafe">[{}: link not shown]</p>{}', tag, extra)
    if tag == "audio":
        return format_html('<audio class="rk-audio" controls preload="none" src="{}"></audio>{}', url, extra)
    return format_html('<video class="rk-video" controls preload="none" src="{}"></video>{}', url, extra)
