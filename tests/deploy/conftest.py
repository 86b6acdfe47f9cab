"""Fixtures of the deploy tests: the stand-in cluster tests/controller uses."""

from tests.controller.conftest import cluster

__all__ = ["cluster"]
