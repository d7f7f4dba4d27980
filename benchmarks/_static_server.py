"""A static file server for the HTTP benchmarks (``python -m benchmarks._static_server ROOT PORT``).

aiohttp's own static handler: Range requests (206), HEAD, sendfile, no access log. It runs in a
process of its own so that its CPU never competes with the client's GIL.
"""

from __future__ import annotations

import sys

from aiohttp import web


def main() -> None:
    root, port = sys.argv[1], int(sys.argv[2])
    app = web.Application()
    app.router.add_static("/", root, show_index=False, follow_symlinks=False)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
