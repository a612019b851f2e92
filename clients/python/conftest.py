"""Fixtures of the Python client suite: stubs generated from proto/ when the suite starts, one
real server for the session, and a channel and stubs to it."""

import grpc
import pytest

import harness

harness.generate_stubs()

from suppression.v1 import suppression_pb2_grpc  # noqa: E402  (generated just above)


@pytest.fixture(scope="session")
def server():
    srv = harness.Server()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def channel(server):
    with grpc.insecure_channel(server.address) as ch:
        yield ch


@pytest.fixture(scope="session")
def stub(channel):
    return suppression_pb2_grpc.SuppressionServiceStub(channel)
