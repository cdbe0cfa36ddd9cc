"""The only settings module. Every value comes from the environment (see .env.example for the full list)."""

import re
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from aitbc_site.env import (
    env_bool,
    env_int,
    env_list,
    env_parsed,
    env_positive_int,
    env_str,
    parse_fee_rate,
    parse_job_prices,
    parse_positive_decimal,
    parse_rate,
    serving_greenlets,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = BASE_DIR / "data"

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set. Set it in the environment "
        "(`make run` generates one under data/ for the embedded default)."
    )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])

API_HOST = env_str("API_HOST", "127.0.0.1")
API_PORT = env_int("API_PORT", 8000, minimum=1, maximum=65535)

# Keys accepted on client and miner endpoints without being issued into the database (the specification's API_KEYS).
API_KEYS = env_list("API_KEYS")

DEFAULT_JOB_TYPES = ["llm_inference", "image_generation", "embedding", "audio_transcription", "fine_tuning"]
JOB_TYPES = env_list("JOB_TYPES", DEFAULT_JOB_TYPES)
_JOB_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
if not JOB_TYPES:
    raise ImproperlyConfigured("JOB_TYPES must name at least one job type")
for _job_type in JOB_TYPES:
    if not _JOB_TYPE_PATTERN.match(_job_type):
        raise ImproperlyConfigured(
            f"JOB_TYPES entries must be lowercase identifiers (a-z, 0-9, _; at most 64 characters), got {_job_type!r}"
        )

# Job lifecycle. Every duration accepts any positive number of seconds so tests can run with seconds-long values.
JOB_LEASE_SECONDS = env_positive_int("JOB_LEASE_SECONDS", 120)
MINER_HEARTBEAT_TIMEOUT = env_positive_int("MINER_HEARTBEAT_TIMEOUT", 90)
JOB_MAX_RUNTIME_SECONDS = env_int("JOB_MAX_RUNTIME_SECONDS", 3600, minimum=10, maximum=86400)
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 3, minimum=1, maximum=10)
JOB_RETRY_BACKOFF_SECONDS = env_positive_int("JOB_RETRY_BACKOFF_SECONDS", 5)
JOB_TTL_SECONDS = env_int("JOB_TTL_SECONDS", 3600, minimum=10, maximum=86400)
# How often the server itself runs the maintenance of `cleanup_miners` (embedded default); 0 turns it off when
# systemd timers or cron do it instead.
MAINTENANCE_INTERVAL_SECONDS = env_int("MAINTENANCE_INTERVAL_SECONDS", 30, minimum=0)
# Partial output (POST /v1/miner/jobs/{id}/output): what one job's attempts may post in all, and how long the output
# of a job that ended is kept before maintenance deletes it.
JOB_OUTPUT_MAX_BYTES = env_positive_int("JOB_OUTPUT_MAX_BYTES", 16 * 1024 * 1024)
JOB_OUTPUT_RETENTION_SECONDS = env_positive_int("JOB_OUTPUT_RETENTION_SECONDS", 7 * 86400)
# The longest a waiting request (a miner's `wait`, a client's `wait`) actually waits; requests may ask for up to 30 s.
# The schemathesis and hostile-input gates shorten it so their thousands of requests end quickly.
LONG_POLL_MAX_SECONDS = env_int("LONG_POLL_MAX_SECONDS", 30, minimum=0, maximum=30)
# A stream with nothing to send writes a comment this often, so proxies keep it open and a client that left is
# noticed (the write fails) and its stream ended.
STREAM_KEEPALIVE_SECONDS = env_positive_int("STREAM_KEEPALIVE_SECONDS", 15)
# An event stream ends after this long (its reader reconnects with Last-Event-ID), so no connection is held forever.
STREAM_MAX_SECONDS = env_positive_int("STREAM_MAX_SECONDS", 3600)

# Receipts are signed with this Ed25519 seed (64 hex digits). Unset, the key is generated once and kept in
# RECEIPT_SIGNING_KEY_FILE so every worker and every later start signs with the same key; production sets it.
RECEIPT_SIGNING_KEY = env_str("RECEIPT_SIGNING_KEY")
RECEIPT_SIGNING_KEY_FILE = Path(env_str("RECEIPT_SIGNING_KEY_FILE", str(DATA_DIR / "receipt-signing.key")))
# Public keys (64 hex digits each) of retired signing keys: their receipts still verify.
RECEIPT_RETIRED_PUBLIC_KEYS = env_list("RECEIPT_RETIRED_PUBLIC_KEYS")

# Wallet login (EIP-4361 Sign-In with Ethereum) and sessions.
# Unset, the login message names the host, port and scheme each request reached the server at (accounts/siwe.py);
# set, they name the site whatever the request says. SITE_URI defaults to https://SITE_DOMAIN, SITE_DOMAIN to the host
# and port of SITE_URI.
SITE_DOMAIN = env_str("SITE_DOMAIN")
SITE_URI = env_str("SITE_URI")
if SITE_DOMAIN and not re.fullmatch(r"[^\s/]+", SITE_DOMAIN):
    raise ImproperlyConfigured(f"SITE_DOMAIN must be a host and optional port, no scheme or path; got {SITE_DOMAIN!r}")
if SITE_URI and (urlsplit(SITE_URI).scheme not in ("http", "https") or not urlsplit(SITE_URI).netloc):
    raise ImproperlyConfigured(f"SITE_URI must be an http(s) URL, e.g. https://coordinator.example, got {SITE_URI!r}")
SIWE_CHAIN_ID = env_int("SIWE_CHAIN_ID", 1, minimum=1)
LOGIN_CHALLENGE_SECONDS = 300
SESSION_TTL_SECONDS = env_positive_int("SESSION_TTL_SECONDS", 86400)
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS")
CORS_ALLOW_HEADERS = [
    "content-type", "x-session-token", "x-api-key", "authorization", "idempotency-key", "x-request-id"
]
CORS_URLS_REGEX = r"^/v1/.*$"

# Billing. Prices are decimal strings of AITBC per job; operators change them in the admin.
JOB_PRICES = env_parsed(
    "JOB_PRICES", {}, parse_job_prices, 'a JSON object of decimal strings, e.g. {"llm_inference": "2.5"}'
)
DEFAULT_JOB_PRICE = Decimal("1")
PLATFORM_FEE_RATE = env_parsed("PLATFORM_FEE_RATE", Decimal("0.05"), parse_fee_rate, "a decimal from 0 to 1")

# Exchange: buying AITBC with bitcoin.
BTC_TO_AITBC_RATE = env_parsed("BTC_TO_AITBC_RATE", Decimal("100000"), parse_positive_decimal, "a positive decimal")
RATE_MAX_CHANGE = env_parsed("RATE_MAX_CHANGE", Decimal("0.2"), parse_fee_rate, "a decimal from 0 to 1")
EXCHANGE_MIN_BTC = env_parsed("EXCHANGE_MIN_BTC", Decimal("0.00001"), parse_positive_decimal, "a positive decimal")
EXCHANGE_MAX_BTC = env_parsed("EXCHANGE_MAX_BTC", Decimal("1"), parse_positive_decimal, "a positive decimal")
# An account-level BIP 84 extended public key (xpub/zpub, tpub/vpub): one fresh address per payment. Without it,
# BITCOIN_ADDRESS is shared by all payments, told apart by a few satoshi added to each amount.
BITCOIN_XPUB = env_str("BITCOIN_XPUB")
BITCOIN_ADDRESS = env_str("BITCOIN_ADDRESS")
PAYMENT_EXPIRY_SECONDS = env_positive_int("PAYMENT_EXPIRY_SECONDS", 900)
PAYMENT_LATE_GRACE_SECONDS = env_int("PAYMENT_LATE_GRACE_SECONDS", 86400, minimum=0)
PAYMENT_CHECK_INTERVAL = env_int("PAYMENT_CHECK_INTERVAL", 30, minimum=0)
# How long a closed payment's own receive address is still looked at for bitcoin sent to it again (a LateDeposit).
PAYMENT_DEPOSIT_WATCH_SECONDS = env_int("PAYMENT_DEPOSIT_WATCH_SECONDS", 7 * 86400, minimum=0)
BITCOIN_BACKEND = env_str("BITCOIN_BACKEND", "manual")
if BITCOIN_BACKEND not in ("esplora", "bitcoind", "manual"):
    raise ImproperlyConfigured(f"BITCOIN_BACKEND must be esplora, bitcoind or manual, got {BITCOIN_BACKEND!r}")
ESPLORA_URL = env_str("ESPLORA_URL", "https://blockstream.info/api")
BITCOIND_RPC_URL = env_str("BITCOIND_RPC_URL", "http://127.0.0.1:8332")
BITCOIN_BACKEND_TIMEOUT = env_positive_int("BITCOIN_BACKEND_TIMEOUT", 10)
BITCOIN_MIN_CONFIRMATIONS = env_int("BITCOIN_MIN_CONFIRMATIONS", 1, minimum=0)
BITCOIN_LARGE_PAYMENT_CONFIRMATIONS = env_int("BITCOIN_LARGE_PAYMENT_CONFIRMATIONS", 3, minimum=0)
BITCOIN_LARGE_PAYMENT_BTC = env_parsed(
    "BITCOIN_LARGE_PAYMENT_BTC", Decimal("0.1"), parse_positive_decimal, "a positive decimal"
)

DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

INSTALLED_APPS = [
    "aitbc_site.admin_site.CoordinatorAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "corsheaders",
    "django_prometheus",
    "accounts",
    "miners",
    "receipts",
    "jobs",
    "exchange",
    "original",
    "aitbc_site",
]

MIDDLEWARE = [
    "aitbc_site.requests.RequestIdMiddleware",
    "aitbc_site.metrics.RequestMetricsMiddleware",
    "aitbc_site.middleware.AllowedHostMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "aitbc_site.middleware.QueryStringGuardMiddleware",
    "aitbc_site.middleware.RequestBodyLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Only the admin shows messages, and it always has a session. The default storage also builds a signed-cookie
# store, signer included, for every request, API requests too.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# No redirects to a slashed URL: under /v1 a wrong path is a JSON 404.
APPEND_SLASH = False

ROOT_URLCONF = "aitbc_site.urls"
WSGI_APPLICATION = "aitbc_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'coordinator.db'}")
try:
    _database = dj_database_url.parse(DATABASE_URL, conn_max_age=600, conn_health_checks=True)
except ValueError as error:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL Django understands: {error}") from None
if _database["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock when a transaction starts, so two
    # transactions never both read and then deadlock upgrading to write (SQLite would fail one at once with
    # "database is locked" instead of waiting); the busy timeout makes waiting writers queue instead of failing.
    _database["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
    }
    # Keep per-thread connections for the life of the worker: reopening SQLite and re-running the PRAGMAs per
    # request costs more than the request itself.
    _database["CONN_MAX_AGE"] = None
    _database["CONN_HEALTH_CHECKS"] = False
    # The same backend, making a new database file and its directory owner-only (aitbc_site/sqlite3/base.py).
    _database["ENGINE"] = "aitbc_site.sqlite3"
elif _database["ENGINE"] == "django.db.backends.postgresql" and serving_greenlets():
    # Under gunicorn's gevent worker every connection is a greenlet, and a greenlet-local database connection kept
    # open would be one PostgreSQL connection per client connected. A pool per worker lends one to a request for
    # its duration instead (Django hands it back when the request ends, and a waiting request before it sleeps).
    _database["CONN_MAX_AGE"] = 0
    _database["OPTIONS"] = {
        **_database.get("OPTIONS", {}),
        "pool": {
            "min_size": 2,
            "max_size": env_positive_int("DATABASE_POOL_SIZE", 16),
            # A request that finds every connection lent waits this long for one, then fails.
            "timeout": 10,
        },
    }
# Django's own backends, not django-prometheus' wrappers of them: those time and count every statement in
# prometheus_client's multiprocess files (and build a cursor class per cursor), about a tenth of a job cycle's CPU.
# Request latency by route is measured anyway; per-statement figures belong to the database (pg_stat_statements).
DATABASES = {"default": _database}
PROMETHEUS_EXPORT_MIGRATIONS = False

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["aitbc_site.authentication.ApiKeyAuthentication"],
    # Deny by default: every view names the role it serves, public views say AllowAny explicitly.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["aitbc_site.rendering.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["aitbc_site.json_input.StrictJSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "aitbc_site.negotiation.JsonFirstNegotiation",
    "DEFAULT_SCHEMA_CLASS": "aitbc_site.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "aitbc_site.exception_handler.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "UNAUTHENTICATED_TOKEN": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "AITBC Coordinator API",
    "DESCRIPTION": (
        "Marketplace coordinator for AI compute: clients submit jobs, miners take jobs that fit their hardware and "
        "post results. Every error is `{\"error\": {\"code\", \"message\", \"details\"}}`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "jobs.models.JobStatus.choices",
        "MinerStatusEnum": "miners.models.MinerStatus.choices",
        "ReportedStatusEnum": ["completed", "failed"],
        "MinerSetStatusEnum": ["active", "draining"],
        "PublishedKeyStatusEnum": ["active", "retired"],
        "ApiKeyRoleEnum": "accounts.models.ApiKeyRole.choices",
        "IssuableApiKeyRoleEnum": ["client", "miner"],
        "JobTypeEnum": JOB_TYPES,
        "OkEnum": ["ok"],
        "OriginalMinerStateEnum": ["ONLINE", "BUSY", "DRAINING", "OFFLINE"],
        "OriginalJobStateEnum": ["QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELED", "EXPIRED"],
    },
}

# --- operations ---------------------------------------------------------------------------------------------------

# The cache holds the rate-limit counters, so every worker must share it with atomic increments: Redis when
# REDIS_URL is set (several app nodes), else diskcache's SQLite-backed cache under data/ (one machine, no server).
REDIS_URL = env_str("REDIS_URL")
CACHE_DIR = Path(env_str("CACHE_DIR", str(DATA_DIR / "cache")))
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "aitbc",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "aitbc_site.cache.PersistentDiskCache",
            "LOCATION": str(CACHE_DIR),
            "TIMEOUT": 300,
            "OPTIONS": {"size_limit": 2**28},
        }
    }
# django_ratelimit.W001 only says diskcache is not on its list of tested backends. Its counters need add() and an
# atomic incr() shared by all processes, which diskcache gives (each is one SQLite transaction); the rate-limit
# tests run against several gunicorn workers to prove it.
SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"]

RATE_LIMIT_CLIENT = env_parsed("RATE_LIMIT_CLIENT", "100/m", parse_rate, "a rate like 100/m (per s, m, h or d)")
RATE_LIMIT_MINER = env_parsed("RATE_LIMIT_MINER", "1000/m", parse_rate, "a rate like 1000/m")
RATE_LIMIT_USER = env_parsed("RATE_LIMIT_USER", "60/m", parse_rate, "a rate like 60/m")
RATE_LIMIT_LOGIN = env_parsed("RATE_LIMIT_LOGIN", "20/m", parse_rate, "a rate like 20/m")
RATE_LIMIT_EXPLORER = env_parsed("RATE_LIMIT_EXPLORER", "60/m", parse_rate, "a rate like 60/m")
# Where the caller's IP is read for per-IP limits. Behind nginx, HTTP_X_REAL_IP (deploy/nginx sets it).
CLIENT_IP_META_KEY = env_str("CLIENT_IP_META_KEY", "REMOTE_ADDR")

# /metrics: open on the embedded default (bind to 127.0.0.1); with METRICS_TOKEN set it wants
# "Authorization: Bearer <token>". deploy/nginx keeps it internal as well.
METRICS_TOKEN = env_str("METRICS_TOKEN")

# HTTPS-only settings, switched on together behind a TLS-terminating proxy (deploy/nginx).
HTTPS_ONLY = env_bool("HTTPS_ONLY", False)
SECURE_SSL_REDIRECT = HTTPS_ONLY
SESSION_COOKIE_SECURE = HTTPS_ONLY
CSRF_COOKIE_SECURE = HTTPS_ONLY
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if HTTPS_ONLY else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS_ONLY
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", HTTPS_ONLY)
# Only trust X-Forwarded-Proto where a proxy that sets it stands in front (never on the embedded default).
# Django reads these headers from every request, whoever sent it (gunicorn's FORWARDED_ALLOW_IPS only governs the
# scheme gunicorn itself reports): they are trusted because the deployment lets nothing but the proxy reach the
# nodes, which is what declaring the proxy promises. request.scheme and request.get_host() then follow the forwarded
# values for everything built from them: the wallet login message, absolute links, ALLOWED_HOSTS checks.
BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY", False)
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The host (and port) from X-Forwarded-Host, still checked against ALLOWED_HOSTS. A separate choice: deploy/nginx
# forwards the public host as Host itself and passes a client's own X-Forwarded-Host through, so there it stays off;
# only for a proxy that rewrites Host and sets X-Forwarded-Host on every request.
USE_X_FORWARDED_HOST = env_bool("TRUST_X_FORWARDED_HOST", False)
if USE_X_FORWARDED_HOST and not BEHIND_TLS_PROXY:
    raise ImproperlyConfigured("TRUST_X_FORWARDED_HOST=true needs BEHIND_TLS_PROXY=true: only a proxy forwards a host")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# The URL prefix the app is served under behind a proxy (deploy/nginx serves it under /api).
FORCE_SCRIPT_NAME = env_str("URL_PREFIX")
if FORCE_SCRIPT_NAME:
    STATIC_URL = f"{FORCE_SCRIPT_NAME.rstrip('/')}/static/"
# Probes that reach a node directly over plain HTTP (load balancer, Prometheus, Docker's health check) are not
# redirected. The patterns match request.path, which carries the prefix.
_PREFIX = (FORCE_SCRIPT_NAME or "").strip("/")
_PREFIX_PATTERN = re.escape(_PREFIX) + "/" if _PREFIX else ""
SECURE_REDIRECT_EXEMPT = [rf"^{_PREFIX_PATTERN}(?:health|ready|metrics)$"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "aitbc_site.logs.RequestIdFilter"}},
    "formatters": {"json": {"()": "aitbc_site.logs.JsonLineFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "ERROR"}},
}
