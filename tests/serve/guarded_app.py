"""``python -m tests.serve.guarded_app``: the web hooks app of ``$CAREPATH_CONFIG`` under uvicorn, without Prefect.

Prints the app's base URL on its first line, then serves until SIGTERM. The hostile-input tests run it as a
child process to measure the server's own memory while they flood it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading


def main() -> None:
    from carepath.engine import Engine
    from carepath.serve import WebServer
    from carepath.settings import Settings
    from carepath.web.app import create_app

    engine = Engine(settings=Settings())
    web = WebServer(create_app(engine, events_token=os.environ.get("CAREPATH_EVENTS_TOKEN")), "127.0.0.1", 0)
    host, port = web.start()
    print(f"http://{host}:{port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    web.stop()
    engine.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
