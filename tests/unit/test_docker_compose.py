"""docker/ is checked without a Docker engine: the Compose file against the Compose specification's JSON schema,
and its services, ports and environment against the settings model the nodes read."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from core.config import Settings, deep_merge, load_settings
from experiments import cluster_bench
from experiments.harness.config import base_server
from experiments.harness.target import parse_targets

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
BUSES = ("redis", "rabbitmq", "mqtt")
NODES = ("wsim-1", "wsim-2", "wsim-3")
STORE_NODES = {"wsim-sqlite": "sqlite", "wsim-mysql": "mysql", "wsim-mongo": "mongo"}  # store_backends' cells


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
    for name in ("redis", "rabbitmq", "mosquitto", "nginx", "experiment", *NODES, *STORE_NODES):
        assert name in services
    for name, svc in services.items():
        if name != "experiment":
            assert "healthcheck" in svc or name in (*NODES, *STORE_NODES), f"{name} has no health check"


def test_mysql_replica_is_read_only_without_breaking_its_init_server() -> None:
    """The image's entrypoint starts its init server with the command's arguments; --super-read-only there stops
    it from creating the root account. The replica becomes read-only from its init script instead (persisted)."""
    command = " ".join(compose()["services"]["mysql-replica"]["command"])
    assert "read-only" not in command and "read_only" not in command
    init = sorted((DOCKER / "mysql" / "replica").glob("*.sql"))
    last = init[-1].read_text()
    statements = [line.strip() for line in last.splitlines() if line.strip() and not line.startswith("--")]
    assert statements[-2:] == ["SET PERSIST read_only = ON;", "SET PERSIST super_read_only = ON;"]
    assert any(line.startswith("START REPLICA") for line in statements)


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


def stages() -> dict[str, str]:
    """The Dockerfile's stages by name: {name: its lines up to the next FROM}."""
    parts = re.split(r"^(?=FROM )", (DOCKER / "Dockerfile").read_text(), flags=re.M)[1:]
    return {re.match(r"FROM \S+ AS (\w+)", part).group(1): part for part in parts}  # type: ignore[union-attr]


def test_image_is_slim_non_root_with_a_health_check() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM python:\$\{PYTHON\}-slim AS runtime\s*$", dockerfile, re.M)
    built = stages()
    assert list(built)[-1] == "node"  # the default target is the node image the wsim services run
    node = built["node"]
    user = re.findall(r"^USER (\S+)", node, re.M)
    assert user and user[-1] not in ("root", "0")
    assert "HEALTHCHECK" in node and "/healthz" in node
    assert re.search(r'^ENTRYPOINT \["wsim"\]', node, re.M)
    pyproject = (ROOT / "pyproject.toml").read_text()
    extras = set(re.findall(r"^(\w+) = \[", pyproject.split("[project.optional-dependencies]")[1], re.M))
    experiment_extras = compose()["services"]["experiment"]["build"]["args"]["EXTRAS"]
    for arg in [*re.findall(r"EXTRAS=([\w,]+)", dockerfile), experiment_extras]:
        assert set(arg.split(",")) <= extras, f"unknown extra in {arg}"


def test_experiment_service_runs_the_benchmark_against_the_nodes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    svc = compose()["services"]["experiment"]
    # not fixed to one tool: Python, with the benchmark as the default command
    assert svc["entrypoint"] == ["python"]
    assert svc["command"][:2] == ["-m", "experiments.cluster_bench"]
    command = [c.replace("${WSIM_BUS:-redis}", "redis") for c in svc["command"][2:]]
    args = cluster_bench.build_parser().parse_args(command)
    port = node_settings("wsim-1", "redis", monkeypatch).server.port
    assert args.urls == [f"http://{n}:{port}" for n in NODES]
    assert any(v.endswith(f":{args.out}") for v in svc["volumes"])


def test_experiment_image_carries_every_backend_extra_and_the_runner() -> None:
    svc = compose()["services"]["experiment"]
    assert svc["build"]["target"] == "experiment" and "experiment" in stages()
    extras = set(svc["build"]["args"]["EXTRAS"].split(","))
    assert extras >= {"mysql", "mongo", "redis", "rabbitmq", "mqtt", "experiments"}
    stage = stages()["experiment"]
    assert re.search(r"^COPY run_experiment.py ", stage, re.M)
    assert re.search(r'^ENTRYPOINT \["python"\]', stage, re.M)
    assert "WORKDIR /app" in stage
    # run_experiment.py writes to <its folder>/reports: that is the bind mount
    assert "../reports:/app/reports" in svc["volumes"]
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    assert "!run_experiment.py" in ignore and "!docker/requirements.lock" in ignore


def _lock_module() -> Any:
    spec = importlib.util.spec_from_file_location("docker_lock", DOCKER / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_image_dependencies_are_pinned_by_the_lock_file() -> None:
    lock = _lock_module()
    pins = lock.read_lock()
    assert len(pins) > 50  # the closure, not only the direct requirements
    assert lock.uncovered(pins) == []  # every requirement of the image's extras pinned, at an allowed version
    assert set(lock.IMAGE_EXTRAS) == set(
        compose()["services"]["experiment"]["build"]["args"]["EXTRAS"].split(",")
    )
    assert all(re.fullmatch(r"[\w.+!-]+", v) for v in pins.values())
    build = stages()["build"]
    assert "--constraint docker/requirements.lock" in build and "COPY docker/requirements.lock" in build


def test_the_lock_check_catches_a_missing_pin() -> None:
    lock = _lock_module()
    pins = lock.read_lock()
    pins.pop("pymongo")
    pins["locust"] = "0.1"
    problems = " ".join(lock.uncovered(pins))
    assert (
        "pymongo" in problems and "is not pinned" in problems and "does not allow the pinned 0.1" in problems
    )


def published(service: dict[str, Any]) -> list[tuple[str, int]]:
    """(host address, host port) of each published port."""
    out = []
    for spec in service.get("ports", []):
        parts = str(spec).split(":")
        out.append((parts[0] if len(parts) == 3 else "0.0.0.0", int(parts[-2])))
    return out


def test_every_node_is_published_for_external_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_experiment.py --target needs a node's REST API, WebSocket and /metrics from the host."""
    services = compose()["services"]
    urls = []
    for name in (*NODES, *STORE_NODES):
        port = node_settings(name, "redis", monkeypatch).server.port
        [(host, host_port)] = published(services[name])
        assert host == "127.0.0.1"  # not on every interface: the nodes' /metrics are not for the world
        assert services[name]["ports"][0].endswith(f":{port}")
        urls.append(f"http://localhost:{host_port}")
    host_ports = [u.rsplit(":", 1)[1] for u in urls]
    assert len(set(host_ports)) == len(host_ports)
    assert parse_targets([",".join(urls[:3])])["*"] == urls[:3]
    header = (DOCKER / "compose.yaml").read_text().split("\nname:")[0]
    for name, kind in STORE_NODES.items():
        [(_, port)] = published(services[name])
        assert f"--target {kind}=http://localhost:{port}" in header or f"{port} {kind}" in header


def test_nginx_keeps_per_node_metrics_off_the_public_port() -> None:
    conf = (DOCKER / "nginx.conf").read_text()
    block = re.search(r"location = /metrics \{(.*?)\}", conf, re.S)
    assert block and "return 404" in block.group(1)


@pytest.mark.parametrize(("name", "kind"), sorted(STORE_NODES.items()))
def test_store_nodes_are_the_store_backends_cells_on_real_services(
    name: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose()["services"]
    svc = services[name]
    assert svc["profiles"] == ["stores"]
    s = node_settings(name, "redis", monkeypatch)
    assert s.server.node == name and s.server.host == "0.0.0.0"
    assert s.strategies.store.messages.kind == kind
    assert s.strategies.store.users.kind == "sqlite"  # as in the experiment: only the message path differs
    data = yaml.safe_load(config_file(svc, "redis").read_text())
    store = data["strategies"].pop("store")
    # everything else is the experiments' server defaults, so a target run measures what a local run does
    expected = deep_merge(base_server(), {"server": {"data_dir": "/data"}})
    assert data.pop("strategies") == {} and data == expected, "differs from experiments/_base/server.yaml"
    for host, port in backend_addresses({"store": store}):
        assert host in services and str(port) in services[host].get("expose", [])
        assert svc["depends_on"][host] == {"condition": "service_healthy"}
    # its own data volume: the SQLite files and JWT secret are not the cluster's
    assert not any(v.startswith("wsim-data:") for v in svc["volumes"])


def test_runs_from_the_image_name_their_commit_and_are_dirty_unless_built_clean(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from experiments.harness import environment

    stage = stages()["experiment"]
    assert "ENV WSIM_GIT_SHA=${GIT_SHA} WSIM_GIT_DIRTY=${GIT_DIRTY}" in stage
    args = compose()["services"]["experiment"]["build"]["args"]
    assert args["GIT_SHA"] == "${WSIM_GIT_SHA:-nogit}" and args["GIT_DIRTY"] == "${WSIM_GIT_DIRTY:-unknown}"
    monkeypatch.setattr(environment, "_git", lambda *a: "")  # no checkout, as in the image
    monkeypatch.setenv("WSIM_GIT_SHA", "0123456789")
    monkeypatch.delenv("WSIM_GIT_DIRTY", raising=False)
    assert environment.git_sha() == "0123456789" and environment.git_dirty() is True
    monkeypatch.setenv("WSIM_GIT_DIRTY", "false")
    assert environment.git_dirty() is False
