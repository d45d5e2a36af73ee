import hashlib
import json
from pathlib import Path

from django.http import FileResponse, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

DATA = Path(__file__)  # the tests point this at a larger file


def index(request):
    return HttpResponse(f"hello from django {request.META['SERVER_PROTOCOL']} {request.scheme}")


@csrf_exempt
def echo_json(request):
    return JsonResponse({"got": json.loads(request.body), "path": request.path, "host": request.get_host()})


def stream(request):
    return StreamingHttpResponse((f"part {index}\n" for index in range(int(request.GET.get("n", 5)))),
                                 content_type="text/plain")


def file(request):
    return FileResponse(open(DATA, "rb"), content_type="application/octet-stream")


@csrf_exempt
def upload(request):
    uploaded = request.FILES["file"]
    digest = hashlib.sha256()
    for chunk in uploaded.chunks():
        digest.update(chunk)
    return JsonResponse({"name": uploaded.name, "sha256": digest.hexdigest(), "size": uploaded.size})
