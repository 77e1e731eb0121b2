"""The real-stack fixtures (tests/support/fixtures.py): faults are injected into the stack."""

from tests.support.fixtures import *  # noqa: F403
