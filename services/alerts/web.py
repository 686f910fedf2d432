"""The safety desk: one web page for the safety physicians, served by the alert service.

`GET /desk` is a plain HTML page with its CSS and JavaScript (shipped in `static/`, no build step,
nothing from a CDN). The page holds no data: it reads the alert API itself, so whatever guards the
API (sign-in, a site user's own site) guards the page's data too. It polls
`GET /v1/alerts?status=open` (the open list) and `GET /v1/alerts?status=all` (acknowledged and
recently resolved) every 2 s, shows an alert's history from `GET /v1/alerts/{id}` and a subject's
timeline from `GET /v1/subjects/{id}/timeline`, and acknowledges or resolves with a comment
(`POST /v1/alerts/{id}/acknowledge`, `/resolve`). Every value is written into the page as
text, never as markup, and the Content-Security-Policy allows only this server's own script and
style.
"""

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from services.alerts.store import AlertStore

STATIC = Path(__file__).parent / "static"
ASSETS = {"desk.css": "text/css", "desk.js": "text/javascript", "favicon.svg": "image/svg+xml"}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # A new release is picked up at the next load: the browser revalidates, nothing is stale.
    "Cache-Control": "no-cache",
}


def desk_router(store: AlertStore) -> APIRouter:
    """The desk's routes; the alert service mounts them with `app.include_router(...)`.

    `store` is not read yet: the page gets every alert through the /v1 API, where access rules
    apply; it is here for server-side fragments the desk may need later."""
    router = APIRouter(tags=["safety desk"])

    @router.get("/desk", include_in_schema=False)
    async def desk_page() -> FileResponse:
        return FileResponse(STATIC / "desk.html", media_type="text/html", headers=SECURITY_HEADERS)

    @router.get("/desk/static/{name}", include_in_schema=False)
    async def desk_asset(name: str) -> FileResponse:
        if name not in ASSETS:  # only the named files: no path from the request reaches the disk
            raise HTTPException(404, "not found")
        return FileResponse(STATIC / name, media_type=ASSETS[name], headers=SECURITY_HEADERS)

    return router
