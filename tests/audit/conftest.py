"""One thread per test process: tiny models on shared cores run many times slower with more."""

from tests.threads import one_thread  # noqa: F401  (autouse, package scope)
