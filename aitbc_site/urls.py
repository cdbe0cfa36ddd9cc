from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from aitbc_site.health import health
from jobs.views import ClientJobViewSet, MinerJobViewSet
from miners.views import MinerViewSet

router = SimpleRouter(trailing_slash=False)
router.register("client/jobs", ClientJobViewSet, basename="client-jobs")
router.register("miner", MinerViewSet, basename="miner")
router.register("miner", MinerJobViewSet, basename="miner-jobs")

urlpatterns = [
    path("v1/", include(router.urls)),
    path("health", health, name="health"),
    path("openapi.json", SpectacularAPIView.as_view(), name="openapi"),
    path("docs", SpectacularSwaggerView.as_view(url_name="openapi"), name="docs"),
    path("redoc", SpectacularRedocView.as_view(url_name="openapi"), name="redoc"),
    path("admin/", admin.site.urls),
]

handler400 = "aitbc_site.exception_handler.handler400"
handler403 = "aitbc_site.exception_handler.handler403"
handler404 = "aitbc_site.exception_handler.handler404"
handler500 = "aitbc_site.exception_handler.handler500"
