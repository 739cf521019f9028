#!/bin/sh
# Run the stream service: N worker processes, one Redis subscription each.
# --timeout-graceful- shutdown bounds a restart: open streams get a last retry: hint and
# close, clients resume elsewhere.
cd "$(dirname "$0")"
exec uvicorn service:app --host "${HOST:-127.0.0.1}" --port "${PORT:-8001}" \
    --workers "${WORKERS:-4}" --timeout-graceful-shutdown 10 --no-access-log
