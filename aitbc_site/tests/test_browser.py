"""End to end, as an operator sees it: Debian's Chromium, driven by Playwright, against gunicorn with DEBUG off and the
static files collected and served by whitenoise. Logs in, reads the dashboard, cancels a job with the admin action.

Needs the `playwright` package (requirements-dev.txt) and /usr/bin/chromium (`apt-get install chromium`); without
either it is skipped, so the suite still passes on a fresh machine. `.ci/browser.sh` installs both and insists it ran.
Playwright's own browser downloads are never used.
"""

import secrets
from pathlib import Path

import httpx
import pytest

from aitbc_site.testing import live_server, run_manage
from conftest import live_env

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
API_KEY = "browser-test-key"
OPERATOR = "operator"

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install -r requirements-dev.txt)"
)
pytestmark = [
    pytest.mark.browser,
    pytest.mark.live,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


def test_an_operator_logs_in_reads_the_dashboard_and_cancels_a_job(live_database_url: str, tmp_path: Path) -> None:
    env = live_env(live_database_url, API_KEYS=API_KEY)
    run_manage("collectstatic", "--no-input", "--verbosity", "0", env=env)
    password = secrets.token_urlsafe(16)
    run_manage(
        "createsuperuser", "--no-input", "--username", OPERATOR, "--email", "operator@example.com",
        env={**env, "DJANGO_SUPERUSER_PASSWORD": password},
    )
    with live_server(env=env, log_path=tmp_path / "gunicorn.log") as server, httpx.Client(
        base_url=server.url, headers={"X-Api-Key": API_KEY}, timeout=30
    ) as api:
        submitted = api.post("/v1/client/jobs", json={"job_type": "llm_inference", "parameters": {"prompt": "hi"}})
        assert submitted.status_code == 201, submitted.text
        job_id = submitted.json()["id"]

        problems: list[str] = []
        static_served: list[str] = []
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                def on_console(message: playwright_api.ConsoleMessage) -> None:
                    if message.type == "error":
                        problems.append(f"console error: {message.text} at {message.location['url']}")

                def on_response(response: playwright_api.Response) -> None:
                    if response.status >= 400:
                        problems.append(f"{response.status} {response.url}")
                    elif "/static/" in response.url:
                        static_served.append(response.url)

                page.on("console", on_console)
                page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
                page.on("requestfailed", lambda request: problems.append(f"failed: {request.url} {request.failure}"))
                page.on("response", on_response)
                expect = playwright_api.expect

                page.goto(f"{server.url}/admin/")
                page.fill("#id_username", OPERATOR)
                page.fill("#id_password", password)
                page.click("input[type=submit]")

                # The dashboard, on the index.
                expect(page).to_have_url(f"{server.url}/admin/")
                expect(page.locator("#dashboard")).to_be_visible()
                expect(page.locator('#jobs-by-status td[data-status="pending"]')).to_have_text("1")
                expect(page.locator('#jobs-by-status td[data-status="cancelled"]')).to_have_text("0")
                expect(page.locator("#oldest-pending")).not_to_have_text("none waiting")
                expect(page.locator("#completed-chart rect.bar")).to_have_count(24)
                expect(page.locator("#payments-pending")).to_have_text("0")

                # From the dashboard's pending figure to the jobs list, and the cancel action.
                page.click('#jobs-by-status a:text-is("Pending")')
                checkbox = page.locator(f'input.action-select[value="{job_id}"]')
                checkbox.check()
                page.select_option("select[name=action]", "cancel_jobs")
                page.click("button[name=index]")
                expect(page.locator(".messagelist .success")).to_have_text("Cancelled 1 job.")

                page.goto(f"{server.url}/admin/")
                expect(page.locator('#jobs-by-status td[data-status="cancelled"]')).to_have_text("1")
            finally:
                browser.close()

        job = api.get(f"/v1/client/jobs/{job_id}").json()
        assert job["status"] == "cancelled"
        events = api.get(f"/v1/client/jobs/{job_id}/events").json()["results"]
        assert events[-1]["actor"] == f"operator:{OPERATOR}", events

    assert problems == []
    # The admin's own stylesheets and scripts came from whitenoise.
    assert any(url.endswith(".css") for url in static_served), static_served
    assert any(url.endswith(".js") for url in static_served), static_served
