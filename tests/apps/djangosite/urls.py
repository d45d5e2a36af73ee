from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("json", views.echo_json),
    path("stream", views.stream),
    path("file", views.file),
    path("upload", views.upload),
]
