"""Redirects: followed by hand, same origin only, at most ``max_redirects``."""

from __future__ import annotations

import pytest
from aiohttp import web

from aiostore import MaxRedirectsExceeded, StoreError

from .support import HELLO, ConnectionCounter, WebServer, http_store


def redirect(location: str, status: int = 302) -> web.Response:
    return web.Response(status=status, headers={"Location": location})


async def test_same_origin_redirects_are_followed(server: WebServer) -> None:
    """Relative and absolute Locations on the configured origin; Range kept; HEAD too."""

    async def moved(request: web.Request) -> web.StreamResponse:
        return redirect("hello.txt", 301)

    async def elsewhere(request: web.Request) -> web.StreamResponse:
        # Same origin, outside base_url's path: allowed (only the origin is the boundary).
        return redirect(f"{server.origin}/mirror/hello.txt", 307)

    async def mirror(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(server.root / "data" / "hello.txt")

    server.routes.update(
        {"/data/moved.txt": moved, "/data/elsewhere.txt": elsewhere, "/mirror/hello.txt": mirror}
    )
    async with http_store(server.base_url, probe_path="hello.txt") as store:
        assert await store.read("moved.txt") == HELLO
        assert await store.read("elsewhere.txt", offset=7, length=5) == HELLO[7:12]
        assert (await store.stat("moved.txt")).size == len(HELLO)
        assert await store.exists("elsewhere.txt")
    seen = [(r.method, r.headers.get("Range")) for r in server.seen("/mirror/hello.txt")]
    assert seen == [("GET", "bytes=7-11"), ("HEAD", None)]


async def test_redirect_loop_raises_max_redirects_exceeded(server: WebServer) -> None:
    """A loop stops after max_redirects follow-ups."""

    async def loop(request: web.Request) -> web.StreamResponse:
        return redirect("/data/loop")

    server.routes["/data/loop"] = loop
    async with http_store(server.base_url, probe_path="hello.txt", max_redirects=3) as store:
        with pytest.raises(MaxRedirectsExceeded) as err:
            await store.read("loop")
        assert err.value.store == "web" and err.value.key == "loop"
        assert "more than 3 redirects" in str(err.value)
        assert len(server.seen("/data/loop")) == 4  # the request and 3 follow-ups
        with pytest.raises(MaxRedirectsExceeded):
            await store.stat("loop")


async def test_max_redirects_is_exact(server: WebServer) -> None:
    """A chain of exactly max_redirects hops works; one more does not."""

    async def hop(request: web.Request) -> web.StreamResponse:
        n = int(request.path.rsplit("/", 1)[1])
        return redirect(f"{n - 1}" if n > 1 else "/data/hello.txt")

    for n in range(1, 5):
        server.routes[f"/data/hop/{n}"] = hop
    async with http_store(server.base_url, probe_path="hello.txt", max_redirects=2) as store:
        assert await store.read("hop/2") == HELLO
        with pytest.raises(MaxRedirectsExceeded):
            await store.read("hop/3")
    async with http_store(server.base_url, probe_path="hello.txt", max_redirects=0) as store:
        with pytest.raises(MaxRedirectsExceeded):
            await store.read("hop/1")


@pytest.mark.parametrize(
    "location",
    ["ftp://127.0.0.1/data/hello.txt", "file:///etc/passwd", "data:,hello", "javascript:x"],
)
async def test_redirect_to_another_scheme_is_refused(server: WebServer, location: str) -> None:
    """Only http and https are followed."""

    async def away(request: web.Request) -> web.StreamResponse:
        return redirect(location)

    server.routes["/data/away"] = away
    async with http_store(server.base_url, probe_path="hello.txt") as store:
        with pytest.raises(StoreError) as err:
            await store.read("away")
        assert not isinstance(err.value, MaxRedirectsExceeded)
        assert "refused a redirect" in str(err.value)
        assert "only http and https" in str(err.value)
        assert store.capabilities == store.configured_capabilities


async def test_redirect_to_another_host_is_refused_and_never_contacted(
    server: WebServer, other_host: ConnectionCounter
) -> None:
    """127.0.0.2, localhost (same machine, other origin) and https on the same host."""
    targets = {
        "/data/ip2": f"http://127.0.0.2:{other_host.port}/data/hello.txt",
        "/data/localhost": f"http://localhost:{server.port}/data/via-localhost",
        "/data/tls": f"https://127.0.0.1:{server.port}/data/hello.txt",
        "/data/port": f"http://127.0.0.1:{other_host.port}/data/hello.txt",
    }

    async def away(request: web.Request) -> web.StreamResponse:
        return redirect(targets[request.path])

    for path in targets:
        server.routes[path] = away
    async with http_store(server.base_url, probe_path="hello.txt") as store:
        for path in targets:
            key = path.removeprefix("/data/")
            with pytest.raises(StoreError) as err:
                await store.read(key)
            assert "only the configured origin" in str(err.value)
            with pytest.raises(StoreError):
                await store.stat(key)
    assert other_host.connections == 0
    assert not server.seen("/data/via-localhost")
