"""`cli.client` config and command calls over real gRPC, against a canned AdminService."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from storesafe.v1 import admin_pb2, admin_pb2_grpc, agent_pb2

from cli.client.admin import AdminClient
from cli.client.settings import Settings
from cli.models import Command, ConfigEntry, ConfigRevision, RolloutRow, SiteConfig
from common import errors

WHEN = dt.datetime(2026, 11, 26, 19, 0, tzinfo=dt.UTC)
STAMP = Timestamp(seconds=int(WHEN.timestamp()))


class Canned(admin_pb2_grpc.AdminServiceServicer):
    """Records each request and answers with a fixed message."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def SetConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.requests.append(request)
        if "nope.key" in request.values:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unknown configuration key 'nope.key'")
        return admin_pb2.SetConfigResponse(revision=7, changed=["backup.dir"])

    def GetConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.requests.append(request)
        return admin_pb2.GetConfigResponse(
            site=request.site,
            desired_revision=7,
            applied_revision=6,
            refused="no such folder",
            entries=[
                admin_pb2.ConfigEntry(key="backup.dir", value="/srv", layer="site:shop-a"),
                admin_pb2.ConfigEntry(
                    key="firebird.password", value="********", layer="fleet", secret=True
                ),
            ],
        )

    def ConfigHistory(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.requests.append(request)
        return admin_pb2.ConfigHistoryResponse(
            revisions=[
                admin_pb2.ConfigRevision(
                    revision=2,
                    scope=admin_pb2.CONFIG_SCOPE_GROUP,
                    target="north",
                    author="admin",
                    at=STAMP,
                    changes={"backup.dir": "(unset)"},
                )
            ]
        )

    def ConfigRollout(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.requests.append(request)
        return admin_pb2.ConfigRolloutResponse(
            sites=[
                admin_pb2.RolloutRow(
                    site="shop-a",
                    group="north",
                    desired_revision=7,
                    applied_revision=6,
                    state="refused",
                    refused="no such folder",
                    last_seen_at=STAMP,
                ),
                admin_pb2.RolloutRow(site="shop-b", group="north", state="offline"),
            ]
        )

    def SendCommand(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.requests.append(request)
        return admin_pb2.SendCommandResponse(command_id="c-1")

    def ListCommands(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.requests.append(request)
        return admin_pb2.ListCommandsResponse(
            commands=[
                admin_pb2.CommandState(
                    id="c-1",
                    site="shop-a",
                    kind=agent_pb2.COMMAND_KIND_SYNC_NOW,
                    created_at=STAMP,
                    created_by="admin",
                    finished_at=STAMP,
                    state="rejected",
                    message="not configured",
                ),
                admin_pb2.CommandState(id="c-0", site="shop-a", kind=99, state="queued"),
            ]
        )


@pytest.fixture
def canned() -> Iterator[tuple[Canned, AdminClient]]:
    service = Canned()  # type: ignore[abstract]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    admin_pb2_grpc.add_AdminServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    client = AdminClient(Settings(server=f"127.0.0.1:{port}", token="t", insecure=True))
    try:
        yield service, client
    finally:
        client.close()
        server.stop(grace=None)


def test_set_config_sends_scope_target_values_and_unset(canned: tuple[Canned, AdminClient]) -> None:
    service, client = canned
    change = client.set_config("group", "north", {"backup.dir": "/srv"}, ["images.dir"])
    assert (change.layer, change.revision, change.changed) == ("group:north", 7, ("backup.dir",))
    sent = service.requests[0]
    assert sent.scope == admin_pb2.CONFIG_SCOPE_GROUP
    assert (sent.target, dict(sent.values), list(sent.unset)) == (
        "north",
        {"backup.dir": "/srv"},
        ["images.dir"],
    )
    assert client.set_config("fleet", "", {"a.b": "1"}, []).layer == "fleet"
    assert service.requests[1].scope == admin_pb2.CONFIG_SCOPE_FLEET


def test_the_servers_refusal_arrives_as_its_sentence(canned: tuple[Canned, AdminClient]) -> None:
    _, client = canned
    with pytest.raises(errors.InvalidArgument) as err:
        client.set_config("site", "shop-a", {"nope.key": "1"}, [])
    assert err.value.message == "unknown configuration key 'nope.key'"


def test_get_config(canned: tuple[Canned, AdminClient]) -> None:
    _, client = canned
    assert client.get_config("shop-a") == SiteConfig(
        site="shop-a",
        desired_revision=7,
        applied_revision=6,
        entries=(
            ConfigEntry("backup.dir", "/srv", "site:shop-a", secret=False),
            ConfigEntry("firebird.password", "********", "fleet", secret=True),
        ),
        refused="no such folder",
    )


def test_history_and_rollout(canned: tuple[Canned, AdminClient]) -> None:
    service, client = canned
    assert client.config_history(limit=5) == [
        ConfigRevision(2, "group", "north", "admin", WHEN, {"backup.dir": "(unset)"})
    ]
    assert service.requests[0].limit == 5
    rows = client.config_rollout(group="north")
    assert service.requests[1].group == "north"
    assert rows == [
        RolloutRow("shop-a", "north", 7, 6, "refused", "no such folder", WHEN),
        RolloutRow("shop-b", "north", 0, 0, "offline", "", None),  # unset time: never
    ]


def test_commands(canned: tuple[Canned, AdminClient]) -> None:
    service, client = canned
    assert client.send_command("shop-a", "backup-now") == "c-1"
    assert service.requests[0].kind == agent_pb2.COMMAND_KIND_BACKUP_NOW
    client.send_command("shop-a", "sync-now")
    assert service.requests[1].kind == agent_pb2.COMMAND_KIND_SYNC_NOW
    done, unknown = client.list_commands("shop-a", limit=3)
    assert service.requests[2].limit == 3
    assert done == Command(
        id="c-1",
        site="shop-a",
        kind="sync-now",
        state="rejected",
        message="not configured",
        created_at=WHEN,
        created_by="admin",
        delivered_at=None,
        finished_at=WHEN,
    )
    assert unknown.kind == "unknown"
