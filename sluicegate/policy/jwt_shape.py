"""What the authenticator needs to know of JWTs without loading PyJWT: is a credential shaped
like one, and the refusal type. PyJWT (and the parts of cryptography it loads, some 20 MiB
of memory) is imported only by :mod:`sluicegate.policy.jwt_auth`, when ``auth.jwt`` is set.
"""

from __future__ import annotations

import re

# Three base64url parts; the header is a JSON object, so its encoding starts with "eyJ"
# ('{"'). The signature may be empty (alg "none"): still a JWT, refused as one.
_JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_MAX_TOKEN = 16 * 1024


def looks_like_jwt(token: str) -> bool:
    return len(token) <= _MAX_TOKEN and _JWT_SHAPE.fullmatch(token) is not None


class JwtRejected(Exception):
    """The token is not accepted; the message says why (for the log, never the client)."""
