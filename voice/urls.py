from django.urls import path

from voice import views

urlpatterns = [
    path("", views.voice_page, name="voice"),
]
