import os

from django.core.wsgi import get_wsgi_application

from aitbc_site.request_framing import ChunkedBodyReader

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aitbc_site.settings")

application = ChunkedBodyReader(get_wsgi_application())
