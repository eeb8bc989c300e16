from django.urls import path

from channels_app import views

urlpatterns = [
    path("<slug:channel_id>/", views.webhook, name="webhook"),
    path("<slug:channel_id>/status/", views.webhook_status, name="webhook-status"),
]
