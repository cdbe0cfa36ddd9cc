# syntax=docker/dockerfile:1
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    API_HOST=0.0.0.0 \
    API_PORT=8000 \
    DATABASE_URL=sqlite:////app/data/coordinator.db

RUN groupadd --system aitbc && useradd --system --gid aitbc --home-dir /app --no-create-home aitbc
WORKDIR /app

# Dependencies in their own layer: rebuilt only when requirements.txt changes.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY --chown=aitbc:aitbc . .
# collectstatic needs settings to import; the key used here is thrown away with the build step.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --no-input --verbosity 0 \
    && mkdir -p /app/data && chown aitbc:aitbc /app/data

USER aitbc
VOLUME ["/app/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"API_PORT\"]}/health', timeout=2)"
CMD ["sh", "-c", "python manage.py migrate --no-input && exec gunicorn -c deploy/gunicorn.conf.py aitbc_site.wsgi:application"]
