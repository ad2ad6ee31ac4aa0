"""The console's web server (aiohttp): one page, its JSON actions, a server-sent event stream and camera JPEGs.

Every request needs the token: ``?token=`` (the link printed at start), the ``X-Console-Token`` header, or the
cookie the page gets with it (SameSite=Strict). No token: 401; a wrong one: 403. A request whose ``Origin`` is
not the console's own, or that a browser marks cross-site, is refused (403), and no CORS header is ever sent.
Blocking ROS calls run in worker threads, so the e-stop is served whatever else is in flight.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time
from importlib import resources
from typing import Any

from aiohttp import WSMsgType, web

LOG = logging.getLogger("roboalign.console")
TOKEN_HEADER = "X-Console-Token"
STATIC = ("index.html", "console.js", "console.css")
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
CONSOLE = web.AppKey("console", Any)
TOKEN = web.AppKey("token", str)


def cookie_name(request: web.Request) -> str:
    """One cookie per console port (cookies are shared by every port of a host)."""
    return "roboalign_console_" + (request.url.port and str(request.url.port) or "0")


@web.middleware
async def same_origin(request: web.Request, handler: Any) -> web.StreamResponse:
    """Refuse cross-origin requests: an Origin other than this server's, or a browser's cross-site mark."""
    origin = request.headers.get("Origin")
    own = f"{request.scheme}://{request.host}"
    if origin is not None and origin != own or request.headers.get("Sec-Fetch-Site") == "cross-site":
        LOG.warning("refused %s %s from origin %s", request.method, request.path, origin)
        return web.json_response({"error": f"cross-origin request refused (origin {origin}, console {own})"},
                                 status=403)
    return await handler(request)


@web.middleware
async def token_auth(request: web.Request, handler: Any) -> web.StreamResponse:
    """401 without a token, 403 with a wrong one (compared in constant time)."""
    given = (request.query.get("token") or request.headers.get(TOKEN_HEADER)
             or request.cookies.get(cookie_name(request)))
    if not given:
        return web.json_response({"error": "token required: open the console: line's link (…/?token=…)"},
                                 status=401)
    if not hmac.compare_digest(given.encode(), request.app[TOKEN].encode()):
        LOG.warning("refused %s %s: wrong token", request.method, request.path)
        return web.json_response({"error": "wrong token"}, status=403)
    response = await handler(request)
    if request.path == "/" and isinstance(response, web.Response):
        response.set_cookie(cookie_name(request), given, httponly=True, samesite="Strict", path="/")
    return response


def _static(name: str) -> bytes:
    return resources.files("roboalign_policy.console").joinpath("static", name).read_bytes()


async def page(request: web.Request) -> web.Response:
    return web.Response(body=_static("index.html"), content_type="text/html",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})


async def static_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    return web.Response(body=_static(name), content_type=TYPES[name[name.rfind("."):]],
                        headers={"Cache-Control": "no-store"})


async def state(request: web.Request) -> web.Response:
    return web.json_response(request.app[CONSOLE].state(), dumps=_dumps)


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the whole state on every episode change, else every ``period`` seconds."""
    console = request.app[CONSOLE]
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
    await resp.prepare(request)
    changed = console.subscribe()
    try:
        while True:
            await resp.write(f"data: {_dumps(console.state())}\n\n".encode())
            try:
                await asyncio.wait_for(changed.wait(), timeout=console.period)
            except asyncio.TimeoutError:
                pass
            changed.clear()
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        console.unsubscribe(changed)
    return resp


async def camera(request: web.Request) -> web.Response:
    console = request.app[CONSOLE]
    feed = console.watch.cameras.get(request.match_info["name"])
    if feed is None:
        raise web.HTTPNotFound(text=f"no camera {request.match_info['name']!r}; cameras: "
                                    f"{', '.join(console.watch.cameras)}")
    data = await asyncio.get_running_loop().run_in_executor(None, feed.jpeg)
    if data is None:
        return web.Response(status=204)
    feed.jpeg_bytes_sent += len(data)
    return web.Response(body=data, content_type="image/jpeg", headers={"Cache-Control": "no-store"})


async def complete(request: web.Request) -> web.Response:
    run = asyncio.get_running_loop().run_in_executor
    return web.json_response(await run(None, request.app[CONSOLE].actions.complete, request.query.get("q", "")))


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text="the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return data


async def estop(request: web.Request) -> web.Response:
    """POST /api/estop: engaging publishes on the e-stop topic here, on arrival; the service confirms after."""
    body = await _body(request)
    engage = bool(body.get("engage", True))
    if engage:
        request.app[CONSOLE].watch.engage_estop()
    return await _act(request, "estop", {"engage": engage, "published": engage})


async def estop_socket(request: web.Request) -> web.WebSocketResponse:
    """The page's e-stop line: a WebSocket held open from page load ("engage" / "release" in, the result out), so
    a click never waits for a free HTTP connection (a browser opens six per host; streams and actions use them)."""
    console = request.app[CONSOLE]
    ws = web.WebSocketResponse(heartbeat=10.0)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type != WSMsgType.TEXT or msg.data not in ("engage", "release"):
            await ws.send_json({"ok": False, "error": "send 'engage' or 'release'"})
            continue
        engage = msg.data == "engage"
        if engage:
            console.watch.engage_estop()
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                console.pool_for("estop"), console.act, "estop", {"engage": engage, "published": engage})
            await ws.send_json({"ok": True, "result": result}, dumps=_dumps)
        except RuntimeError as e:  # no e-stop service: the topic went out; the page says the bridge did not confirm
            console.log.add("estop", False, str(e))
            await ws.send_json({"ok": False, "error": str(e)})
        console.notify()
    return ws


async def action(request: web.Request) -> web.Response:
    """POST /api/<name>: one action of the console (run in a worker thread); the reply says what happened."""
    return await _act(request, request.match_info["name"], await _body(request))


async def _act(request: web.Request, name: str, body: dict[str, Any]) -> web.Response:
    console = request.app[CONSOLE]
    t0 = time.monotonic()
    try:
        result = await asyncio.get_running_loop().run_in_executor(console.pool_for(name), console.act, name, body)
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        console.log.add(name, False, str(e))
        return web.json_response({"ok": False, "error": str(e)}, status=400 if not isinstance(e, RuntimeError)
                                 else 503)
    console.notify()
    return web.json_response({"ok": True, "result": result, "server_ms": round((time.monotonic() - t0) * 1e3, 1)},
                             dumps=_dumps)


def _dumps(obj: Any) -> str:
    """Strict JSON (the browser's JSON.parse takes no NaN): a non-finite number is sent as null."""
    try:
        return json.dumps(obj, default=str, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(obj), default=str, allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def make_app(console: Any, token: str) -> web.Application:
    """The console's application; ``console`` provides state / act / subscribe (see ``node.Console``)."""
    if len(token) < 16:
        raise ValueError("the console token must be at least 16 characters (default: a random one)")
    app = web.Application(middlewares=[same_origin, token_auth], client_max_size=64 * 1024)
    app[CONSOLE], app[TOKEN] = console, token
    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", static_file)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/camera/{name}.jpg", camera)
    app.router.add_get("/api/complete", complete)
    app.router.add_get("/api/estop_ws", estop_socket)
    app.router.add_post("/api/estop", estop)
    app.router.add_post("/api/{name}", action)
    return app
