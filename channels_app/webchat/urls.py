from django.conf import settings
from django.urls import path

from channels_app.webchat import views

urlpatterns = [
    path("", views.chat_page, name="chat"),
    path(f"{settings.MEDIA_URL.strip('/')}/<path:path>", views.media_file, name="media"),
]
