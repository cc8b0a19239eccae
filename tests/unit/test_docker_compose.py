"""docker/ is checked without a Docker engine: the Compose file against the Compose specification's JSON schema,
and its services, ports and environment against the settings model the nodes read."""

from __future__ import annotations

import copy
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from core.config import Settings, load_settings
from experiments import cluster_bench

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
BUSES = ("redis", "rabbitmq", "mqtt")
NODES = ("wsim-1", "wsim-2", "wsim-3")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return data


def compose_schema() -> dict[str, Any]:
    """The Compose specification schema (compose-spec/compose-spec, Apache-2.0), as vendored and kept current
    by the check-jsonschema package (a test dependency), with its licence next to it."""
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    assert (vendor / "licenses" / "LICENSE.compose-spec").is_file()
    schema: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text())
    return schema


def validator() -> jsonschema.protocols.Validator:
    schema = compose_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_compose_file_follows_the_compose_specification() -> None:
    errors = sorted(validator().iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_schema_check_catches_mistakes() -> None:
    broken = copy.deepcopy(compose())
    broken["services"]["wsim-1"]["helthcheck"] = {"test": ["CMD", "true"]}
    broken["services"]["wsim-2"]["depends_on"] = {"wsim-1": {"condition": "service_happy"}}
    messages = " ".join(e.message for e in validator().iter_errors(broken))
    assert "helthcheck" in messages and "service_happy" in messages


def test_compose_brings_up_every_required_service() -> None:
    services = compose()["services"]
    images = {name: svc.get("image", "") for name, svc in services.items()}
    assert images["mongo"].startswith("mongo:") and "--replSet" in services["mongo"]["command"]
    assert images["mysql-primary"].startswith("mysql:8") and images["mysql-replica"].startswith("mysql:8")
    assert "--log-bin=mysql-bin" in services["mysql-primary"]["command"]
    assert "--read-only=ON" in services["mysql-replica"]["command"]
    for name in ("redis", "rabbitmq", "mosquitto", "nginx", "experiment", *NODES):
        assert name in services
    for name, svc in services.items():
        if name != "experiment":
            assert "healthcheck" in svc or name in NODES, f"{name} has no health check"


def node_env(service: dict[str, Any]) -> dict[str, str]:
    """What a node process sees: the image's ENV lines, then the service's environment."""
    env: dict[str, str] = {}
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if line.startswith("ENV "):
            env |= dict(re.findall(r"(\w+)=(\S+)", line))
    env |= {k: str(v) for k, v in service.get("environment", {}).items()}
    return {k: v for k, v in env.items() if k.startswith("WSIM_")}


def config_file(service: dict[str, Any], bus: str) -> Path:
    for volume in service["volumes"]:
        source, target = volume.replace("${WSIM_BUS:-redis}", bus).split(":")[:2]
        if target == "/etc/wsim/wsim.yaml":
            return (DOCKER / source).resolve()
    raise AssertionError("no config file mounted at /etc/wsim/wsim.yaml")


def node_settings(name: str, bus: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    service = compose()["services"][name]
    for key, value in node_env(service).items():
        monkeypatch.setenv(key, value)
    return load_settings(config_file(service, bus))


@pytest.mark.parametrize("bus", BUSES)
def test_every_node_reads_valid_settings_that_match_its_service(
    bus: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose()["services"]
    names = set()
    for name in NODES:
        s = node_settings(name, bus, monkeypatch)
        svc = services[name]
        assert s.server.node == name  # node names are the service names (and unique)
        names.add(s.server.node)
        assert str(s.server.port) in svc["expose"]
        assert s.server.host == "0.0.0.0"
        assert s.strategies.bus.kind == bus
        assert s.strategies.presence.kind == "redis"
        assert s.strategies.cache.kind in ("off", "l2", "l1+l2")  # a bare l1 would be stale across nodes
        assert s.strategies.dedup.kind != "memory"  # a resend after failover lands on another node
        # the data directory is the shared volume (uploads and the JWT secret are seen by every node)
        assert f"wsim-data:{s.server.data_dir}" in svc["volumes"]
        # browsers come through nginx's published port
        published = services["nginx"]["ports"][0].split(":")[0]
        assert f"http://localhost:{published}" in s.server.origins
    assert names == set(NODES)


def backend_addresses(settings_data: dict[str, Any]) -> list[tuple[str, int]]:
    """Every host:port the configuration points at (URLs and host/port pairs)."""
    found: list[tuple[str, int]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("host"), str) and isinstance(value.get("port"), int):
                found.append((value["host"], value["port"]))
            for v in value.values():
                walk(v)
        elif isinstance(value, str) and "://" in value:
            m = re.match(r"^\w+://(?:[^@/]*@)?([^:/?]+):(\d+)", value)
            assert m, f"URL without an explicit port: {value}"
            found.append((m.group(1), int(m.group(2))))

    walk(settings_data)
    return found


@pytest.mark.parametrize("bus", BUSES)
def test_backend_hosts_and_ports_are_compose_services(bus: str) -> None:
    services = compose()["services"]
    data = yaml.safe_load(config_file(services["wsim-1"], bus).read_text())
    addresses = backend_addresses(data["strategies"])
    assert addresses
    for host, port in addresses:
        assert host in services, f"{host} is not a Compose service"
        assert str(port) in services[host].get("expose", []), f"{host} does not expose {port}"
        assert host in services["wsim-1"]["depends_on"], f"the nodes do not wait for {host}"


def test_the_three_configs_differ_only_in_the_bus() -> None:
    datas = {bus: yaml.safe_load((DOCKER / "config" / f"wsim-{bus}.yaml").read_text()) for bus in BUSES}
    for data in datas.values():
        data["strategies"].pop("bus")
    assert datas["redis"] == datas["rabbitmq"] == datas["mqtt"]


@pytest.mark.parametrize("bus", BUSES)
def test_store_section_is_the_hybrid_storage(bus: str, monkeypatch: pytest.MonkeyPatch) -> None:
    s = node_settings("wsim-1", bus, monkeypatch)
    assert s.strategies.store.users.kind == "mysql"
    assert s.strategies.store.users.replica_dsn is not None  # reads that may lag go to the replica
    assert s.strategies.store.messages.kind == "mongo"
    assert s.strategies.store.messages.write_concern == "majority"


def test_nginx_proxies_to_every_node_with_websocket_upgrade_and_sane_timeouts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conf = (DOCKER / "nginx.conf").read_text()
    s = node_settings("wsim-1", "redis", monkeypatch)
    upstream = re.search(r"upstream wsim \{(.*?)\}", conf, re.S)
    assert upstream
    servers = re.findall(r"server\s+([\w.-]+:\d+)", upstream.group(1))
    assert sorted(servers) == [f"{n}:{s.server.port}" for n in NODES]
    ws = re.search(r"location = /ws \{(.*?)\}", conf, re.S)
    assert ws and "proxy_set_header Upgrade $http_upgrade" in ws.group(1)
    assert "proxy_set_header Connection $connection_upgrade" in ws.group(1)
    read_timeout = int(re.search(r"proxy_read_timeout (\d+)s", ws.group(1)).group(1))  # type: ignore[union-attr]
    # nginx must not cut a socket the server still considers alive (heartbeat x missed beats of silence)
    assert read_timeout > s.heartbeat.interval_s * s.heartbeat.missed_beats
    body = int(re.search(r"client_max_body_size (\d+)m", conf).group(1))  # type: ignore[union-attr]
    assert body * 1024 * 1024 > s.limits.upload_max_bytes


def test_image_is_slim_non_root_with_a_health_check() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM python:\$\{PYTHON\}-slim\s*$", dockerfile, re.M)
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user and user[-1] not in ("root", "0")
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
    pyproject = (ROOT / "pyproject.toml").read_text()
    extras = set(re.findall(r"^(\w+) = \[", pyproject.split("[project.optional-dependencies]")[1], re.M))
    experiment_extras = compose()["services"]["experiment"]["build"]["args"]["EXTRAS"]
    for arg in [*re.findall(r"EXTRAS=([\w,]+)", dockerfile), experiment_extras]:
        assert set(arg.split(",")) <= extras, f"unknown extra in {arg}"


def test_experiment_service_runs_the_benchmark_against_the_nodes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    svc = compose()["services"]["experiment"]
    assert svc["entrypoint"][-1] == "experiments.cluster_bench"
    command = [c.replace("${WSIM_BUS:-redis}", "redis") for c in svc["command"]]
    args = cluster_bench.build_parser().parse_args(command)
    port = node_settings("wsim-1", "redis", monkeypatch).server.port
    assert args.urls == [f"http://{n}:{port}" for n in NODES]
    assert any(v.endswith(f":{args.out}") for v in svc["volumes"])
