"""The endpoint's limits, from the environment; the app and its gunicorn worker class share them."""

from __future__ import annotations

import os

MAX_BODY_BYTES = int(os.environ.get("SAGEPIPE_MAX_BODY_BYTES", str(6 * 1024 * 1024)))  # SageMaker's limit
# A request whose body stops arriving (no data for this long) is answered 408.
READ_TIMEOUT_S = float(os.environ.get("SAGEPIPE_READ_TIMEOUT_S", "10"))
# A request's headers must arrive within this long in all (gunicorn's --keep-alive, which the gevent worker
# applies to reading headers), then the connection closes.
HEADER_TIMEOUT_S = 5
