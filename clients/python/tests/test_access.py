"""Ownership and permission grants, the caller's own tokens, and the admin's user management.

All on the session cluster: every test makes its own users and resources (unique names).
"""

from __future__ import annotations

import pytest
from helpers import USER, USER_PASSWORD, drain, payloads, refused_within

from mom_client import (
    BadRequest,
    Connection,
    Forbidden,
    Grant,
    NotFound,
    Permission,
    ResourceKind,
    Role,
    Unauthorized,
)


def test_a_stranger_needs_a_grant_to_pull_from_someone_elses_queue(
    conn: Connection, new_user, unique
) -> None:
    exchange, queue = unique("ex"), unique("q")
    conn.declare_exchange(exchange, "direct")
    conn.declare_queue(queue)
    conn.bind(exchange, queue, "k")
    conn.publish(exchange, "k", "for-the-stranger")
    stranger = new_user("stranger")
    assert stranger.user is not None

    for call in (
        lambda: stranger.pull(queue),
        lambda: stranger.get_queue(queue),
        lambda: stranger.publish(exchange, "k", "x"),
        lambda: stranger.delete_queue(queue),
        # Only an owner (or an admin) grants on a name.
        lambda: stranger.grant(stranger.user, "queue", queue, "read"),
    ):
        with pytest.raises(Forbidden) as refused:
            call()
        assert refused.value.status == 403 and refused.value.message
    assert queue not in stranger.list_queues(), "listings show only what the user may see"

    grant = conn.grant(stranger.user, ResourceKind.QUEUE, queue, [Permission.READ])
    assert isinstance(grant, Grant) and grant.id
    assert (grant.user, grant.kind, grant.pattern, grant.granted_by) == (stranger.user, "queue", queue, USER)
    assert grant.permissions == [Permission.READ]
    assert grant in conn.permissions() and grant in stranger.permissions()

    # Effective for every request that starts after the grant was acknowledged.
    [delivery] = stranger.pull(queue, 10, wait_ms=5_000)
    assert delivery.payload == "for-the-stranger"
    assert stranger.ack(queue, delivery).acked == 1
    assert queue in stranger.list_queues()
    with pytest.raises(Forbidden):
        stranger.delete_queue(queue)  # read is not configure
    with pytest.raises(Forbidden):
        stranger.publish(exchange, "k", "x")  # nor write on the exchange

    conn.revoke(grant)
    with pytest.raises(Forbidden):
        stranger.pull(queue)
    assert grant not in conn.permissions()
    assert stranger.permissions() == []
    with pytest.raises(NotFound):
        conn.revoke(grant.id)


def test_a_pattern_grant_reaches_only_the_granters_own_resources(
    conn: Connection, admin: Connection, new_user, unique
) -> None:
    prefix = unique("feed")
    own, foreign = f"{prefix}.mine", f"{prefix}.admins"
    conn.declare_topic(own)
    admin.declare_topic(foreign)
    reader = new_user("reader")
    grant = conn.grant(reader.user, "topic", f"{prefix}.*", ["read", "write"])
    assert set(grant.permissions) == {Permission.READ, Permission.WRITE}
    assert reader.subscribe(own, "r") is True
    assert reader.publish_topic(own, "tick").routed == 1
    assert payloads(reader.pull_subscription(own, "r", wait_ms=5_000)) == ["tick"]
    with pytest.raises(Forbidden):
        reader.subscribe(foreign, "r")
    conn.revoke(grant.id)


def test_the_admin_can_use_anyones_queue(conn: Connection, admin: Connection, unique) -> None:
    exchange, queue = unique("ex"), unique("q")
    conn.declare_exchange(exchange, "fanout")
    conn.declare_queue(queue)
    conn.bind(exchange, queue)
    admin.publish(exchange, "", "from-the-admin")
    assert payloads(drain(admin, queue, 1)) == ["from-the-admin"]
    admin.delete_queue(queue)
    assert queue not in conn.list_queues()


def test_whoami_and_refresh_token(cluster, conn: Connection, admin: Connection, admin_credentials) -> None:
    me = conn.whoami()
    assert (me.username, me.role) == (USER, Role.USER) and me.role == "user"
    assert admin.whoami().username == admin_credentials[0]
    assert admin.whoami().role == Role.ADMIN

    with Connection.from_token(cluster.gateway_url, conn.token) as by_token:
        by_token.refresh_token()  # no password needed: the valid token suffices
        assert by_token.token and by_token.expires_in and by_token.expires_in > 0
        assert by_token.whoami().username == USER
        assert isinstance(by_token.list_queues(), list)


def test_revoke_tokens_voids_every_earlier_token(cluster, new_user) -> None:
    user = new_user("revoker")
    old_token = user.token
    user.revoke_tokens()
    assert refused_within(cluster.gateway_url, old_token), "a revoked token still works after 5 s"
    # The connection knows the password: it logs in again on its next call.
    assert user.whoami().username == user.user
    assert user.token != old_token
    assert isinstance(user.list_queues(), list)


def test_the_admin_lists_and_deletes_users_whose_tokens_then_stop(
    cluster, admin: Connection, admin_credentials, unique
) -> None:
    name = unique("doomed")
    created = admin.create_user(name, USER_PASSWORD)
    assert (created.username, created.role) == (name, Role.USER)
    listed = {u.username: u.role for u in admin.users()}
    assert listed[name] == Role.USER and listed[admin_credentials[0]] == Role.ADMIN

    with Connection(cluster.gateway_url, name, USER_PASSWORD) as doomed:
        doomed.declare_queue(unique("q"))
        token = doomed.token
        admin.delete_user(name)
        assert refused_within(cluster.gateway_url, token), "a deleted user's token still works after 5 s"
        with pytest.raises(Unauthorized):  # logging in again fails too
            doomed.list_queues()
    assert name not in [u.username for u in admin.users()]
    with pytest.raises(NotFound):
        admin.delete_user(name)
    with pytest.raises(BadRequest):  # no admin deletes themself
        admin.delete_user(admin_credentials[0])


def test_the_admin_sets_roles_and_resets_passwords(cluster, admin: Connection, unique) -> None:
    name = unique("promoted")
    admin.create_user(name, USER_PASSWORD)
    with Connection(cluster.gateway_url, name, USER_PASSWORD) as promoted:
        with pytest.raises(Forbidden):
            promoted.users()
        assert admin.set_role(name, "admin").role == Role.ADMIN
        assert promoted.whoami().role == Role.ADMIN
        assert name in [u.username for u in promoted.users()]
        assert admin.set_role(name, Role.USER).role == Role.USER
        assert promoted.whoami().role == Role.USER

        token = promoted.token
        admin.reset_password(name, "a-brand-new-password")
        assert refused_within(cluster.gateway_url, token), "tokens from before a reset still work after 5 s"
    with pytest.raises(Unauthorized):
        Connection(cluster.gateway_url, name, USER_PASSWORD)
    with Connection(cluster.gateway_url, name, "a-brand-new-password") as again:
        assert again.whoami().username == name


def test_a_plain_user_cannot_manage_users(conn: Connection, unique) -> None:
    for call in (
        conn.users,
        lambda: conn.create_user(unique("nobody"), USER_PASSWORD),
        lambda: conn.delete_user("admin"),
        lambda: conn.set_role(USER, "admin"),
        lambda: conn.reset_password("admin", "hijacked-password"),
    ):
        with pytest.raises(Forbidden) as refused:
            call()
        assert refused.value.status == 403
