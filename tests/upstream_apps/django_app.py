"""A one-file Django project behind the real gateway (tests/e2e/upstream_apps.rs).

It is configured exactly as docs/upstream-apps.md tells an operator to configure Django:
RemoteUserMiddleware reading the gateway's user header (its name passed in
VESTIBULE_USER_HEADER), RemoteUserBackend, SECURE_PROXY_SSL_HEADER and
CSRF_TRUSTED_ORIGINS. It serves with the standard library's WSGI server on
127.0.0.1:PORT (argv[1]) and prints "ready" once it listens.

Views:
  /whoami, /static/whoami   JSON: the Django user, is_secure(), the groups header
  /form                     GET: a CSRF token; POST: "posted" when Django's CSRF check passes
"""
import json
import os
import sys
import tempfile

from django.conf import settings

HEADER = os.environ.get("VESTIBULE_USER_HEADER", "Remote-User")
GROUPS = os.environ.get("VESTIBULE_GROUPS_HEADER", "Remote-Groups")
ORIGIN = os.environ["VESTIBULE_ORIGIN"]  # e.g. https://clinic.example


def meta_key(header: str) -> str:
    """The WSGI environ key of an HTTP header: Remote-User -> HTTP_REMOTE_USER."""
    return "HTTP_" + header.upper().replace("-", "_")


settings.configure(
    DEBUG=False,
    SECRET_KEY="test-only-not-secret",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
    ],
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        __name__ + ".GatewayUserMiddleware",
    ],
    AUTHENTICATION_BACKENDS=["django.contrib.auth.backends.RemoteUserBackend"],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(tempfile.mkdtemp(), "db.sqlite3"),
        }
    },
    SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
    SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
    CSRF_TRUSTED_ORIGINS=[ORIGIN],
    USE_TZ=True,
    LOGGING_CONFIG=None,
)

import django  # noqa: E402

django.setup()

from django.contrib.auth.middleware import RemoteUserMiddleware  # noqa: E402
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.middleware.csrf import get_token  # noqa: E402
from django.urls import path  # noqa: E402


class GatewayUserMiddleware(RemoteUserMiddleware):
    # The gateway sends the user as an HTTP header, which WSGI puts in META as
    # HTTP_<NAME>; the default REMOTE_USER is a server variable, not a header.
    header = meta_key(HEADER)


def whoami(request):
    return JsonResponse(
        {
            "user": request.user.username if request.user.is_authenticated else None,
            "secure": request.is_secure(),
            "groups": request.META.get(meta_key(GROUPS)),
        }
    )


def form(request):
    if request.method == "POST":
        return HttpResponse("posted by " + request.user.username)
    return JsonResponse({"csrf": get_token(request)})


urlpatterns = [
    path("whoami", whoami),
    path("static/whoami", whoami),
    path("form", form),
]


def main() -> None:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application

    call_command("migrate", verbosity=0, interactive=False)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", int(sys.argv[1]), get_wsgi_application(), handler_class=Quiet)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
