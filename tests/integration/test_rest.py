"""The REST API as a client uses it: social graph, groups and roles, conversation list, history paging."""

from __future__ import annotations

import httpx
import pytest

from core.sdk import ClientError, SendError, WsimClient
from tests.conftest import ClientFactory, ServerFactory
from tests.support.helpers import make_friends
from tests.support.server import RunningServer


async def expect_error(coro: object, status: int, code: str) -> None:
    with pytest.raises(ClientError) as info:
        await coro  # type: ignore[misc]
    assert (info.value.status, info.value.code) == (status, code)


async def test_errors_are_json_with_stable_codes(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        r = await http.get("/api/users/me")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        r = await http.get("/no/such/route")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = await http.post("/api/auth/register", json={"username": "x"})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid"
        assert "password" in r.json()["error"]["message"]
        r = await http.post(
            "/api/auth/register", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 422
        r = await http.post("/api/auth/register", json={"username": "ab", "password": "password-123"})
        assert r.status_code == 422 and "username" in r.json()["error"]["message"]
        r = await http.get("/healthz")
        assert r.json()["status"] == "ok"
        metrics = (await http.get("/metrics")).text
        assert "wsim_connections" in metrics and "wsim_send_ack_seconds" in metrics


async def test_profile_and_search(make_client: ClientFactory) -> None:
    alice = await make_client("searchable_alice", connect=False)
    me = await alice.request("PATCH", "/api/users/me", json={"display_name": "Alice 爱丽丝", "bio": "hi"})
    assert me["display_name"] == "Alice 爱丽丝"
    bob = await make_client(connect=False)
    found = await bob.request("GET", "/api/users/search", params={"q": "searchable"})
    assert [u["username"] for u in found["users"]] == ["searchable_alice"]
    found = await bob.request("GET", "/api/users/search", params={"q": "爱丽"})
    assert [u["id"] for u in found["users"]] == [alice.user_id]
    assert (await bob.request("GET", "/api/users/search", params={"q": "%_"}))["users"] == []
    await expect_error(bob.request("GET", "/api/users/999999"), 404, "not_found")


async def test_friend_requests_accept_decline_remark_delete(make_client: ClientFactory) -> None:
    alice, bob, carol = [await make_client(connect=False) for _ in range(3)]
    req = await alice.request(
        "POST", "/api/friends/requests", json={"user_id": bob.user_id, "message": "hi!"}
    )
    assert req["status"] == "pending" and req["from"]["id"] == alice.user_id
    again = await alice.request("POST", "/api/friends/requests", json={"user_id": bob.user_id})
    assert again["id"] == req["id"]  # idempotent while pending
    incoming = (await bob.request("GET", "/api/friends/requests"))["incoming"]
    assert [r["id"] for r in incoming] == [req["id"]]
    await expect_error(alice.request("POST", f"/api/friends/requests/{req['id']}/accept"), 404, "not_found")
    await bob.request("POST", f"/api/friends/requests/{req['id']}/accept")
    await expect_error(
        bob.request("POST", f"/api/friends/requests/{req['id']}/accept"), 409, "already_exists"
    )
    friends = (await alice.request("GET", "/api/friends"))["friends"]
    assert [f["user"]["id"] for f in friends] == [bob.user_id]
    await alice.request("PUT", f"/api/friends/{bob.user_id}/remark", json={"remark": "Bobby"})
    assert (await alice.request("GET", "/api/friends"))["friends"][0]["remark"] == "Bobby"
    assert (await bob.request("GET", "/api/friends"))["friends"][0]["remark"] == ""  # private to alice
    # mutual request accepts
    req2 = await carol.request("POST", "/api/friends/requests", json={"user_id": alice.user_id})
    await alice.request("POST", f"/api/friends/requests/{req2['id']}/decline")
    req3 = await carol.request("POST", "/api/friends/requests", json={"user_id": alice.user_id})
    back = await alice.request("POST", "/api/friends/requests", json={"user_id": carol.user_id})
    assert back["status"] == "accepted" and back["id"] == req3["id"]
    await expect_error(
        alice.request("POST", "/api/friends/requests", json={"user_id": alice.user_id}), 422, "invalid"
    )
    await alice.request("DELETE", f"/api/friends/{bob.user_id}")
    assert [f["user"]["id"] for f in (await bob.request("GET", "/api/friends"))["friends"]] == []
    await expect_error(alice.request("DELETE", f"/api/friends/{bob.user_id}"), 404, "not_found")
    # blocks
    await bob.request("PUT", f"/api/blocks/{alice.user_id}")
    assert [u["id"] for u in (await bob.request("GET", "/api/blocks"))["users"]] == [alice.user_id]
    await expect_error(
        alice.request("POST", "/api/friends/requests", json={"user_id": bob.user_id}), 403, "blocked"
    )


async def test_group_roles_membership_and_limits(
    start_server: ServerFactory, clients: list[WsimClient]
) -> None:
    srv = await start_server({"limits": {"max_group_members": 4}})
    owner, admin, m1, m2, m3 = [WsimClient(srv.url) for _ in range(5)]
    clients += [owner, admin, m1, m2, m3]
    for i, c in enumerate((owner, admin, m1, m2, m3)):
        await c.register(f"grp{i}", "password-123")
    for c in (admin, m1, m2, m3):
        await owner.befriend(c)
    await expect_error(
        owner.create_group("too big", [admin.user_id, m1.user_id, m2.user_id, m3.user_id]), 409, "group_full"
    )
    g = await owner.create_group("team", [admin.user_id, m1.user_id])
    gid, conv = g["id"], g["conv"]
    assert {m["user"]["id"]: m["role"] for m in g["members"]} == {
        owner.user_id: "owner",
        admin.user_id: "member",
        m1.user_id: "member",
    }
    await owner.request("PUT", f"/api/groups/{gid}/members/{admin.user_id}/role", json={"role": "admin"})
    await expect_error(m1.request("PATCH", f"/api/groups/{gid}", json={"name": "hijack"}), 403, "forbidden")
    await admin.request("PATCH", f"/api/groups/{gid}", json={"name": "renamed"})
    assert (await m1.request("GET", f"/api/groups/{gid}"))["name"] == "renamed"
    await expect_error(m3.request("GET", f"/api/groups/{gid}"), 403, "not_member")
    # admin adds a member (must be admin's friend)
    await expect_error(
        admin.request("POST", f"/api/groups/{gid}/members", json={"user_ids": [m2.user_id]}),
        403,
        "not_friends",
    )
    added = await owner.request("POST", f"/api/groups/{gid}/members", json={"user_ids": [m2.user_id]})
    assert added == {"added": [m2.user_id]}
    await expect_error(
        owner.request("POST", f"/api/groups/{gid}/members", json={"user_ids": [m3.user_id]}),
        409,
        "group_full",
    )
    # the late member reads history only from joining onward
    page = await m2.history(conv)
    assert page["first_seq"] == page["messages"][0]["seq"]
    assert page["messages"][0]["body"]["event"] == "group.members_added"
    full = await owner.history(conv)
    assert full["messages"][0]["body"]["event"] == "group.created"
    await expect_error(
        admin.request("DELETE", f"/api/groups/{gid}/members/{owner.user_id}"), 403, "forbidden"
    )
    await admin.request("DELETE", f"/api/groups/{gid}/members/{m1.user_id}")
    await expect_error(m1.history(conv), 403, "not_member")
    await expect_error(owner.request("POST", f"/api/groups/{gid}/leave"), 403, "forbidden")
    await m2.request("POST", f"/api/groups/{gid}/leave")
    members = (await owner.request("GET", f"/api/groups/{gid}/members"))["members"]
    assert sorted(m["user"]["id"] for m in members) == sorted([owner.user_id, admin.user_id])
    # ownership transfer, then dissolve by the new owner
    await owner.request("PUT", f"/api/groups/{gid}/members/{admin.user_id}/role", json={"role": "owner"})
    await expect_error(owner.request("POST", f"/api/groups/{gid}/dissolve"), 403, "forbidden")
    await admin.request("POST", f"/api/groups/{gid}/dissolve")
    await admin.connect()
    with pytest.raises(SendError) as info:
        await admin.send(conv, "anyone?")
    assert info.value.code == "group_dissolved"
    events = [m["body"]["event"] for m in (await owner.history(conv))["messages"]]
    assert events == [
        "group.created",
        "group.role_changed",
        "group.renamed",
        "group.members_added",
        "group.member_removed",
        "group.member_left",
        "group.role_changed",
        "group.dissolved",
    ]


async def test_conversation_list_unread_and_history_paging(make_client: ClientFactory) -> None:
    alice, bob = await make_client(), await make_client()
    conv = await make_friends(alice, bob)
    for i in range(25):
        await alice.send(conv, f"p{i}")
    convs = (await bob.request("GET", "/api/conversations"))["conversations"]
    entry = next(c for c in convs if c["conv"] == conv)
    assert (
        entry["last_seq"] == 26 and entry["last"]["body"]["text"] == "p24" and entry["peer"] == alice.user_id
    )
    assert entry["unread"] == 25  # bob accepted the friendship: its notice is not unread for him
    assert (
        next(
            c
            for c in (await alice.request("GET", "/api/conversations"))["conversations"]
            if c["conv"] == conv
        )["unread"]
        == 0
    )  # own messages are read
    await bob.read(conv, 20)
    for _ in range(100):
        entry = next(
            c for c in (await bob.request("GET", "/api/conversations"))["conversations"] if c["conv"] == conv
        )
        if entry["unread"] == 6:
            break
    assert entry["unread"] == 6 and entry["read_seq"] == 20
    newest = await bob.history(conv, limit=10)
    assert [m["seq"] for m in newest["messages"]] == list(range(17, 27)) and newest["has_older"]
    older = await bob.history(conv, before=17, limit=10)
    assert [m["seq"] for m in older["messages"]] == list(range(7, 17))
    oldest = await bob.history(conv, before=7, limit=10)
    assert [m["seq"] for m in oldest["messages"]] == list(range(1, 7)) and not oldest["has_older"]
    forward = await bob.history(conv, after=20, limit=3)
    assert [m["seq"] for m in forward["messages"]] == [21, 22, 23] and forward["has_newer"]
