"""The notifications table behind the two SQLite examples (short polling, naive long
polling).

The database file comes from NOTIFICATIONS_DB (default: notifications.sqlite3 here).
"""

import os
import sqlite3
from contextlib import closing

from flask import Blueprint, request

DATABASE = os.environ.get("NOTIFICATIONS_DB", "notifications.sqlite3")


def connect() -> sqlite3.Connection:
    db = sqlite3.connect(DATABASE)
    db.row_factory = sqlite3.Row
    return db


with closing(connect()) as db, db:
    db.execute(
        "CREATE TABLE IF NOT EXISTS notifications (id INTEGER PRIMARY KEY, data TEXT)"
    )


def notifications_after(last_id: int) -> list[dict]:
    with closing(connect()) as db:
        rows = db.execute(
            "SELECT id, data FROM notifications WHERE id > ? ORDER BY id", (last_id,)
        ).fetchall()
    return [dict(row) for row in rows]


# The write side: POST /notifications {"data": "..."} stores one notification.
writes = Blueprint("writes", __name__)


@writes.post("/notifications")
def add_notification() -> tuple[dict, int]:
    data = (request.get_json(silent=True) or {}).get("data")
    if not isinstance(data, str):
        return {
            "error": "invalid_body",
            "detail": 'send JSON like {"data": "hello"}',
        }, 400
    with closing(connect()) as db, db:
        new_id = db.execute(
            "INSERT INTO notifications (data) VALUES (?)", (data,)
        ).lastrowid
    return {"id": new_id}, 201
