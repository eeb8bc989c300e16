from django.contrib import admin
from django.urls import include, path

from roomkit_project.health import healthz
from rooms.api.endpoints import api
from rooms.console.admin.inbox import admin_login
from rooms.console.admin.inbox import urls as inbox_urls

urlpatterns = [
    # The operators' inbox (inside the admin: its login, permissions and look).
    path("admin/inbox/", include(inbox_urls())),
    # Operators land in the inbox after logging in (the admin's index, with the dashboard, links to it).
    path("admin/login/", admin_login, name="rooms_admin_login"),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/v1/", api.urls),
    path("webhooks/", include("channels_app.urls")),
    path("voice/", include("voice.urls")),
    path("", include("channels_app.webchat.urls")),
]

handler400 = "roomkit_project.errors.bad_request"
handler403 = "roomkit_project.errors.permission_denied"
handler404 = "roomkit_project.errors.not_found"
handler500 = "roomkit_project.errors.server_error"
