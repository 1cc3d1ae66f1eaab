"""Request and response bodies of the /v1 API: they live in ``halguru.api_schemas`` (shared with
``halguru.client``) and are re-exported here."""

from halguru.api_schemas import *  # noqa: F403
from halguru.api_schemas import __all__ as __all__
