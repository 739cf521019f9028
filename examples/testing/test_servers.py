"""The API and the stream service on real loopback sockets, as a browser reaches them.

serve_wsgi and serve_asgi run the apps in threads of the test's process, so `memory://`
(one embedded server per process) is shared by both; serve_gunicorn runs real gunicorn
in a process of its own.
"""

# --8<-- [start:imports]
import threading
import uuid
from pathlib import Path

import httpx
from app import create_app as create_api

from sidestream.access import allow_everyone
from sidestream.bus import AsyncBus, Bus, connect, connect_async
from sidestream.service import create_app as create_service
from sidestream.testing import read_events, serve_asgi, serve_gunicorn, serve_wsgi

# --8<-- [end:imports]


# --8<-- [start:threads]
def test_a_client_reads_what_the_api_published() -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    api = create_api(Bus(connect("memory://"), prefix=prefix))
    service_bus = AsyncBus(connect_async("memory://"), prefix=prefix)
    # Public, for the test
    service = create_service(service_bus, authorize=allow_everyone)
    with serve_wsgi(api) as api_url, serve_asgi(service) as service_url:
        ids = [
            httpx.post(f"{api_url}/channels/orders/events", json={"text": text}).json()[
                "id"
            ]
            for text in ("paid", "shipped")
        ]
        # Published before the stream opened: read from the start (a cursor of "0"), so
        # the test need not wait for the stream to be subscribed before it publishes.
        capture = read_events(
            f"{service_url}/events?channel=orders&last_event_id=0", count=2
        )
    assert capture.status == 200
    assert [(event.id, event.data) for event in capture.events] == list(
        zip(ids, ["paid", "shipped"], strict=True)
    )
    # What EventSource would send back on reconnect
    assert capture.last_event_id == ids[-1]


# --8<-- [end:threads]


# --8<-- [start:gunicorn]
def test_under_gunicorn_a_poll_gets_what_is_posted_after_its_cursor() -> None:
    with serve_gunicorn(
        "app:create_app()",
        # One worker: one embedded Redis
        *(
            "--worker-class",
            "gthread",
            "--threads",
            "4",
        ),
        cwd=Path(__file__).parent,
        env={"REDIS_URL": "memory://"},
    ) as url:
        cursor = httpx.get(f"{url}/channels/orders/poll").json()["last_id"]
        poll = f"{url}/channels/orders/poll?last_id={cursor}&timeout=10"
        replies: list[httpx.Response] = []
        waiting = threading.Thread(
            target=lambda: replies.append(httpx.get(poll, timeout=15))
        )
        # A thread of gunicorn's worker waits in XREAD, another takes the POST.
        waiting.start()
        httpx.post(f"{url}/channels/orders/events", json={"text": "paid"})
        waiting.join()
    assert [event["data"] for event in replies[0].json()["events"]] == ["paid"]


# --8<-- [end:gunicorn]
