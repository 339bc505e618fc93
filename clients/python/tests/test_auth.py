"""Registering, logging in, and what the gateway does with a bad token."""

from __future__ import annotations

import pytest

from mom_client import Conflict, Connection, Unauthorized


def test_register_then_login_gives_a_working_token(cluster, unique) -> None:
    user = unique("user")
    Connection.register(cluster.gateway_url, user, "long-enough-pw")
    with Connection(cluster.gateway_url, user, "long-enough-pw") as conn:
        assert conn.token
        assert conn.expires_in and conn.expires_in > 0
        assert isinstance(conn.list_queues(), list)
        assert "long-enough-pw" not in repr(conn) and conn.token not in repr(conn)


def test_a_taken_name_is_a_conflict(cluster, unique) -> None:
    user = unique("user")
    Connection.register(cluster.gateway_url, user, "long-enough-pw")
    with pytest.raises(Conflict) as taken:
        Connection.register(cluster.gateway_url, user, "other-password")
    assert taken.value.status == 409 and taken.value.message


def test_register_option_creates_the_user_or_logs_in(cluster, unique) -> None:
    user = unique("user")
    for _ in range(2):  # the second time the name is taken: that is fine, the login decides
        with Connection(cluster.gateway_url, user, "long-enough-pw", register=True) as conn:
            conn.list_topics()
    with pytest.raises(Unauthorized):
        Connection(cluster.gateway_url, user, "wrong-password", register=True)


def test_wrong_password_is_unauthorized(cluster, unique) -> None:
    user = unique("user")
    Connection.register(cluster.gateway_url, user, "long-enough-pw")
    with pytest.raises(Unauthorized) as refused:
        Connection(cluster.gateway_url, user, "not-the-password")
    assert refused.value.status == 401


@pytest.mark.parametrize("token", ["", "x.y.z", "eyJhbGciOiJIUzI1NiJ9.e30.forged"])
def test_a_bad_token_is_unauthorized(cluster, token: str) -> None:
    with Connection.from_token(cluster.gateway_url, token) as conn:
        with pytest.raises(Unauthorized) as refused:
            conn.list_queues()
        assert refused.value.status == 401 and refused.value.message
        with pytest.raises(Unauthorized):
            conn.publish("any-exchange", "k", "payload")


def test_a_connection_with_a_password_logs_in_again_when_its_token_is_refused(cluster, unique) -> None:
    user = unique("user")
    with Connection(cluster.gateway_url, user, "long-enough-pw", register=True) as conn:
        conn._token = "x.y.z"  # as if it had expired
        assert isinstance(conn.list_exchanges(), list)
        assert conn.token != "x.y.z"


def test_the_cluster_view_names_every_node_and_partition(cluster, unique) -> None:
    user = unique("user")
    with Connection(cluster.gateway_url, user, "long-enough-pw", register=True) as conn:
        view = conn.cluster()
        assert len(view.nodes) == cluster.node_count and all(n.live for n in view.nodes)
        assert view.partitions and all(p.leader_live and p.leader in p.isr for p in view.partitions)
        assert view.controller
