"""The HTTP gateway: `create_app(GatewayDeps(...))` maps HTTP to service commands.

Nothing here connects at import time; the composition root (reference_impl/runtime.py, the
tests) builds the deps and owns their lifetimes.
"""

from reference_impl.api.app import create_app
from reference_impl.api.deps import GatewayDeps

__all__ = ["GatewayDeps", "create_app"]
