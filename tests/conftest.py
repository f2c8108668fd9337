"""Shared fixtures: one moto server over HTTP for the session, reset between tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import moto_server
from harness.moto_server import LocalAws


@pytest.fixture(scope="session")
def local_aws() -> Iterator[LocalAws]:
    aws = moto_server.start()
    yield aws
    aws.stop()


@pytest.fixture
def aws(local_aws: LocalAws) -> Iterator[LocalAws]:
    """A clean moto for each test."""
    local_aws.reset()
    yield local_aws
