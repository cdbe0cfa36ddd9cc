# syntax=docker/dockerfile:1
# The coordinator in one container: gunicorn on 0.0.0.0:8000, data (SQLite database, cache, generated keys) in the
# /app/data volume. No Docker engine runs in CI: .ci/ops.sh lints this file (hadolint and the project's own checks)
# and runs the same steps in a clean virtual environment.

# Pinned to a patch release so a rebuild does not change Python under the application; bump it deliberately.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    API_HOST=0.0.0.0 \
    API_PORT=8000 \
    DATABASE_URL=sqlite:////app/data/coordinator.db

# A fixed numeric id, so files in the volume keep one owner across rebuilds and hosts can map it.
RUN groupadd --system --gid 10001 aitbc \
    && useradd --system --uid 10001 --gid aitbc --home-dir /app --no-create-home aitbc
WORKDIR /app

# Dependencies in their own layer: rebuilt only when requirements.txt changes.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

# The code stays owned by root: the service can read it but not change it. Only /app/data is its own.
COPY . .
# collectstatic needs settings to import; the key used here is thrown away with the build step.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input --verbosity 0 \
    && mkdir -p /app/data && chown 10001:10001 /app/data

USER 10001:10001
VOLUME ["/app/data"]
EXPOSE 8000
# /health touches no database; it is exempt from the HTTPS redirect, so it answers over plain HTTP even with
# HTTPS_ONLY=true and URL_PREFIX set.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ['API_PORT'], timeout=2)"]
# Migrations run at start for the single-container default. With several app containers, run them once per release
# instead (`python manage.py migrate`) and start the others with gunicorn alone.
CMD ["sh", "-c", "python manage.py migrate --no-input && exec gunicorn -c deploy/gunicorn.conf.py aitbc_site.wsgi:application"]
