from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from accounts.views import UserViewSet
from aitbc_site.health import health, ready
from aitbc_site.metrics import metrics_view
from aitbc_site.root import root
from exchange.views import ExchangeViewSet
from jobs.views import ClientJobViewSet, JobTypeViewSet, MinerJobViewSet
from miners.views import MinerViewSet
from original.views import ExplorerViewSet, OriginalJobViewSet, OriginalMinerViewSet
from receipts.views import ReceiptViewSet

router = SimpleRouter(trailing_slash=False)
router.register("client/jobs", ClientJobViewSet, basename="client-jobs")
router.register("miner", MinerViewSet, basename="miner")
router.register("miner", MinerJobViewSet, basename="miner-jobs")
router.register("receipts", ReceiptViewSet, basename="receipts")
router.register("users", UserViewSet, basename="users")
router.register("job-types", JobTypeViewSet, basename="job-types")
router.register("exchange", ExchangeViewSet, basename="exchange")
# The original AITBC dialect (README: "The original AITBC dialect").
router.register("jobs", OriginalJobViewSet, basename="original-jobs")
router.register("miners", OriginalMinerViewSet, basename="original-miners")
router.register("explorer", ExplorerViewSet, basename="explorer")

urlpatterns = [
    path("v1/", include(router.urls)),
    path("", root, name="root"),
    path("health", health, name="health"),
    path("ready", ready, name="ready"),
    path("metrics", metrics_view, name="metrics"),
    path("openapi.json", SpectacularJSONAPIView.as_view(), name="openapi"),
    path("docs", SpectacularSwaggerView.as_view(url_name="openapi"), name="docs"),
    path("redoc", SpectacularRedocView.as_view(url_name="openapi"), name="redoc"),
    path("admin/", admin.site.urls),
]

handler400 = "aitbc_site.exception_handler.handler400"
handler403 = "aitbc_site.exception_handler.handler403"
handler404 = "aitbc_site.exception_handler.handler404"
handler500 = "aitbc_site.exception_handler.handler500"
