# The Quickstart's shell commands, one section per step (not one script: the
# servers each run in a terminal of their own). tests/examples/test_quickstart.py
# runs every section but the Redis installs, in a fresh virtualenv with the wheel.

# --8<-- [start:install]
python3 -m venv .venv && . .venv/bin/activate
pip install "sidestream[flask,falcon]"
# --8<-- [end:install]

# --8<-- [start:first-try]
pip install "sidestream[memory]"  # the embedded server: for trying and for tests
REDIS_URL=memory:// flask --app api run
# --8<-- [end:first-try]

# --8<-- [start:first-try-curl]
curl -s http://127.0.0.1:5000/channels/user:ann/events -H "X-Demo-User: ann" \
     -H "Content-Type: application/json" -d '{"data": "hello"}'
curl -s "http://127.0.0.1:5000/poll/user:ann?last_id=0" -H "X-Demo-User: ann"
# --8<-- [end:first-try-curl]

# --8<-- [start:redis-debian]
sudo apt install redis-server  # starts it as a service on 127.0.0.1:6379
# --8<-- [end:redis-debian]

# --8<-- [start:redis-homebrew]
brew install redis && brew services start redis
# --8<-- [end:redis-homebrew]

# --8<-- [start:redis-container]
docker run --rm -p 127.0.0.1:6379:6379 redis:7
# --8<-- [end:redis-container]

# --8<-- [start:key]
python -c "import secrets; print(secrets.token_urlsafe(32))" > token.key
# --8<-- [end:key]

# --8<-- [start:env]
. .venv/bin/activate
export REDIS_URL=redis://127.0.0.1:6379/0
export SIDESTREAM_TOKEN_KEY="$(cat token.key)"  # the same key in both processes
# --8<-- [end:env]

# --8<-- [start:run-api]
flask --app api run
# --8<-- [end:run-api]

# --8<-- [start:run-service]
uvicorn service:app --port 8001
# --8<-- [end:run-service]

# --8<-- [start:publish]
curl -s http://127.0.0.1:5000/channels/user:ann/events -H "X-Demo-User: ann" \
     -H "Content-Type: application/json" -d '{"data": "hello, browser"}'
# --8<-- [end:publish]

# --8<-- [start:forbidden]
curl -s -i http://127.0.0.1:5000/channels/user:bob/events -H "X-Demo-User: ann" \
     -H "Content-Type: application/json" -d '{"data": "not yours"}'
# --8<-- [end:forbidden]
