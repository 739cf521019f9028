"""A Mercure 1.0 hub on Redis: the stream service with its Mercure route, configured
like the reference hub, by environment variables only.

    uvicorn --app-dir examples/mercure_hub hub:app --port 3000
"""

# --8<-- [start:hub]
import os

from sidestream.errors import InvalidConfig
from sidestream.mercure_hub import MercureSettings
from sidestream.service import create_app
from sidestream.tokens import AccessTokenClaims, StreamTokens, authorizer


def setting(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise InvalidConfig(f"set {name}: see examples/mercure_hub/hub.py")
    return value


def verifier(role: str) -> StreamTokens:
    # An HMAC secret (HS256, the default) or a PEM public key (RS256, ES256, EdDSA...).
    key = setting(f"MERCURE_{role}_JWT_KEY")
    algorithm = os.environ.get(f"MERCURE_{role}_JWT_ALG", "HS256")
    shared = algorithm.startswith("HS")
    return StreamTokens(
        key if shared else None,
        algorithm=algorithm,
        verify_key=None if shared else key,
        audience=setting("MERCURE_AUDIENCE"),  # the hub's URL: tokens name it in aud
        issuer=setting("MERCURE_ISSUER"),  # who signs the tokens: your API's URL
        claims_format=AccessTokenClaims(client_id=setting("MERCURE_ISSUER")),
    )


subscribers = verifier("SUBSCRIBER")
settings = MercureSettings(
    hub_url=setting("MERCURE_AUDIENCE"),
    publisher_tokens=verifier("PUBLISHER"),
    subscriber_tokens=subscribers,
    anonymous=os.environ.get("MERCURE_ANONYMOUS") == "1",
)
# REDIS_URL names the Redis every process of the hub shares; /events stays closed
# to anyone without a subscriber token.
app = create_app(authorize=authorizer(subscribers), mercure=settings)
# --8<-- [end:hub]
