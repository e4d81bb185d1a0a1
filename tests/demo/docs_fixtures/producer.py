"""`python producer.py`: publishes one task to the worker and waits for its result."""

import _examples

_examples.use("celery")

from pipeline_app import add  # noqa: E402

result = add.delay(2, 3)
value = result.get(timeout=90)
assert value == 5, value
print(f"add(2, 3) = {value}, task {result.id}")
