from django.http import HttpRequest, JsonResponse


def health(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. It touches no database, so a slow database never restarts healthy workers."""
    return JsonResponse({"status": "ok"})
