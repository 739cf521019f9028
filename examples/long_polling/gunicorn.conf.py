"""gunicorn settings for an API that serves long polls.

    gunicorn -c gunicorn.conf.py blocking:app

Each waiting poll holds one thread (and one Redis connection) for up to its timeout, so
the API runs threads, not sync workers: workers x threads is how many requests it holds
at once.
"""

import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
# Processes: about one per CPU core
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
# Per process: waiting polls + normal requests
threads = int(os.environ.get("THREADS", "32"))
# Keep threads below the Redis pool size (redis-py 8: 100 connections per process by
# default).

# gthread: how long a worker may go silent before it is killed, not a request limit.
timeout = 60
graceful_timeout = 35  # on restart, let a 30 s poll finish
keepalive = 5  # idle keep-alive connections wait in a poller, not on a thread
