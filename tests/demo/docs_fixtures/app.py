"""`celery -A app worker`: the example Celery app (broker and queue from PIPETRACE_EXAMPLE_*)."""

import _examples

_examples.use("celery")

from pipeline_app import app  # noqa: E402,F401
