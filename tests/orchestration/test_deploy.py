"""The production deployment files (deploy/), checked without Helm or Docker: the Helm values against the
official chart's schemas and against the code, the instance config they make against dagster's own
validator, the Dockerfile against the Makefile, uv.lock, workspace.yaml and its dockerignore, and (slow)
the image's builder stage replayed from the lock file up to importing the code location."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VALUES_PATH = DEPLOY / "helm" / "values.yaml"
VALUES = yaml.safe_load(VALUES_PATH.read_text(encoding="utf-8"))
CHART_SCHEMA = json.loads((DEPLOY / "helm" / "dagster-values.schema.json").read_text(encoding="utf-8"))
SUBCHART_SCHEMA = json.loads(
    (DEPLOY / "helm" / "dagster-user-deployments-values.schema.json").read_text(encoding="utf-8")
)
README = (DEPLOY / "README.md").read_text(encoding="utf-8")
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
MODULE = yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"][0]["python_module"]["module_name"]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
UV = ROOT / ".tools" / "bin" / "uv"


def locked_versions() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {p["name"]: p["version"] for p in lock["package"] if "version" in p}


def makefile_uv_version() -> str:
    return re.search(r"^UV_VERSION\s*:=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M).group(1)


# --------------------------------------------------------------------------------------------
# Helm values against the chart's JSON schemas
# --------------------------------------------------------------------------------------------


def without_remote_refs(schema):
    """The schemas point Kubernetes types (resources, env sources, probes...) at kubernetesjsonschema.dev;
    offline those references are dropped, so only the chart's own keywords next to them apply."""
    if isinstance(schema, dict):
        return {
            k: without_remote_refs(v)
            for k, v in schema.items()
            if not (k == "$ref" and isinstance(v, str) and v.startswith("http"))
        }
    if isinstance(schema, list):
        return [without_remote_refs(v) for v in schema]
    return schema


def is_helm_error(error: jsonschema.ValidationError) -> bool:
    """False for what Helm's merge with the chart's defaults satisfies: a missing required key of a map
    (the chart's values.yaml has every one). Lists are replaced whole, so list items must be complete;
    the conditional requirements (if/then: the chosen launcher's config) always apply."""
    if error.validator == "required":
        return any(isinstance(p, int) for p in error.absolute_path) or "then" in error.absolute_schema_path
    if error.validator in ("anyOf", "oneOf") and error.context:
        branches: dict = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        return not any(all(not is_helm_error(s) for s in subs) for subs in branches.values())
    return True


def helm_schema_errors(values: dict, schema: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(without_remote_refs(schema))
    return sorted(
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(values)
        if is_helm_error(e)
    )


def test_vendored_schemas_are_the_charts():
    assert (
        CHART_SCHEMA["title"] == "DagsterHelmValues"
        and "dagster-user-deployments" in CHART_SCHEMA["properties"]
    )
    assert SUBCHART_SCHEMA["title"] == "DagsterUserDeploymentsHelmValues"
    jsonschema.Draft7Validator.check_schema(CHART_SCHEMA)
    jsonschema.Draft7Validator.check_schema(SUBCHART_SCHEMA)


def test_values_validate_against_the_chart_schema():
    assert helm_schema_errors(VALUES, CHART_SCHEMA) == []


def test_user_deployments_validate_against_the_subchart_schema():
    assert helm_schema_errors(VALUES["dagster-user-deployments"], SUBCHART_SCHEMA) == []


def _set(values: dict, path: str, value) -> dict:
    out = copy.deepcopy(values)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = out
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return out


@pytest.mark.parametrize(
    "path,value",
    [
        ("runLauncher.type", "K8sLauncher"),  # not in the enum
        ("dagsterDaemon.runCoordinater", {"enabled": True}),  # a typo: closed object
        ("dagster-user-deployments.deployments.0.port", KeyError),  # list items are not merged
        ("dagster-user-deployments.deployments.0.dagsterApiGrpcArgs", "-m orchestration.definitions"),
        ("runLauncher.config.k8sRunLauncher", KeyError),  # the chosen launcher's config
        ("postgresql.enabled", "false"),
    ],
)
def test_the_schema_check_rejects_broken_values(path, value):
    assert helm_schema_errors(_set(VALUES, path, value), CHART_SCHEMA)


# --------------------------------------------------------------------------------------------
# Helm values against the code
# --------------------------------------------------------------------------------------------

DEPLOYMENTS = VALUES["dagster-user-deployments"]["deployments"]


def test_chart_version_is_the_locked_dagster():
    dagster = locked_versions()["dagster"]
    pinned = set(re.findall(r"--version (\S+)", VALUES_PATH.read_text() + README))
    pinned |= set(re.findall(r"dagster/dagster (\d\S*)", VALUES_PATH.read_text()))
    assert pinned == {dagster}


def test_the_code_location_is_this_repository_module():
    assert (
        VALUES["dagster-user-deployments"]["enabled"] and VALUES["dagster-user-deployments"]["enableSubchart"]
    )
    assert len(DEPLOYMENTS) == 1
    (deployment,) = DEPLOYMENTS
    assert deployment["dagsterApiGrpcArgs"] == ["-m", MODULE]
    assert (ROOT / Path(*MODULE.split("."))).with_suffix(".py").is_file()
    assert deployment["port"] == 3030
    assert deployment["includeConfigInLaunchedRuns"]["enabled"]


def test_runs_are_kubernetes_jobs_and_storage_is_an_external_postgres():
    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher"
    assert VALUES["runLauncher"]["config"]["k8sRunLauncher"]["resources"]["requests"]
    pg = VALUES["postgresql"]
    assert pg["enabled"] is False and pg["postgresqlHost"] and "postgresqlPassword" not in pg
    assert VALUES["generatePostgresqlPasswordSecret"] is False and VALUES["global"]["postgresqlSecretName"]
    daemon = VALUES["dagsterDaemon"]
    assert daemon["enabled"] and daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert VALUES["scheduler"]["type"] == "DagsterDaemonScheduler"


SECRET_KEY = re.compile(r"password|passwd|secret|token|credential|private.?key|access.?key|api.?key", re.I)
SECRET_SHAPES = [
    re.compile(p)
    for p in (
        r"AKIA[0-9A-Z]{16}",
        r"-----BEGIN",
        r"\beyJ[A-Za-z0-9_-]{10,}",
        r"^[A-Za-z0-9+/=_-]{32,}$",
        r"://[^/\s:@]+:[^/\s@]+@",
    )
]
SECRET_ENV = {
    "LAKEHOUSE_PSEUDONYM_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
}


def literal_secrets(values) -> list[str]:
    """Values that look like a secret: a string under a secret-like key (a Secret's *name* excepted), a
    string shaped like a key, or a secret variable set in an env map."""
    found = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "env" and isinstance(v, dict):
                    found.extend(f"{path}.env.{name}" for name in v if name in SECRET_ENV)
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}.{i}")
        elif isinstance(node, str):
            key = path.rsplit(".", 1)[-1]
            named = key.endswith(("SecretName", "secretName")) or re.search(r"\.envSecrets\.\d+\.name$", path)
            if (SECRET_KEY.search(key) and not named) or any(p.search(node) for p in SECRET_SHAPES):
                found.append(path)

    walk(values, "")
    return found


def test_no_literal_secrets_in_the_values():
    assert literal_secrets(VALUES) == []


@pytest.mark.parametrize(
    "path,value",
    [
        ("postgresql.postgresqlPassword", "hunter2"),
        ("dagster-user-deployments.deployments.0.env.LAKEHOUSE_PSEUDONYM_KEY", "a-key"),
        ("dagsterWebserver.env", {"SOMETHING": "AKIAIOSFODNN7EXAMPLE"}),
    ],
)
def test_the_secret_check_finds_literal_secrets(path, value):
    assert literal_secrets(_set(VALUES, path, value))


def names_read_by_the_code() -> set[str]:
    """Variable names the code reads: quoted LAKEHOUSE_* literals in the packages, env_var() in dbt."""
    names = set()
    for folder in ("src", "assets", "orchestration"):
        for path in (ROOT / folder).rglob("*.py"):
            names |= set(re.findall(r"""["'](LAKEHOUSE_[A-Z0-9_]+)["']""", path.read_text(encoding="utf-8")))
    names |= set(
        re.findall(r"env_var\('(LAKEHOUSE_[A-Z0-9_]+)'", (ROOT / "dbt_project/profiles.yml").read_text())
    )
    return names


def env_names(values) -> set[str]:
    names = set()
    if isinstance(values, dict):
        for k, v in values.items():
            if k in ("env", "envVars") and isinstance(v, dict):
                names |= set(v)
            elif k in ("env", "envVars") and isinstance(v, list):
                names |= {e["name"] if isinstance(e, dict) else e.split("=")[0] for e in v}
            else:
                names |= env_names(v)
    elif isinstance(values, list):
        for v in values:
            names |= env_names(v)
    return names


def test_every_variable_set_is_one_the_code_reads():
    from lakehouse import settings

    read = names_read_by_the_code()
    assert {"LAKEHOUSE_LAKE", "LAKEHOUSE_STATE", "LAKEHOUSE_PSEUDONYM_KEY"} <= read  # the parse finds names
    env = DEPLOYMENTS[0]["env"]
    assert env_names(VALUES) - read == set()
    assert {n for n in dockerfile_env(final_stage()) if n.startswith("LAKEHOUSE_")} - read == set()
    # production never falls back to the embedded defaults under .data
    assert {"LAKEHOUSE_LAKE", "LAKEHOUSE_STATE", "LAKEHOUSE_WAREHOUSE"} <= set(env)
    assert env["LAKEHOUSE_WAREHOUSE"] in settings.WAREHOUSE_KINDS
    assert env.get("LAKEHOUSE_ENGINE", "local") in settings.ENGINE_KINDS
    if env["LAKEHOUSE_WAREHOUSE"] == "bigquery":
        assert "LAKEHOUSE_BIGQUERY_PROJECT" in env
    # the README documents only variables that exist
    assert set(re.findall(r"LAKEHOUSE_[A-Z0-9_]+", README)) - read == set()


def test_the_pseudonym_key_comes_from_a_secret_and_credentials_from_workload_identity():
    deployment = DEPLOYMENTS[0]
    secrets = {s["name"] for s in deployment["envSecrets"]}
    assert "LAKEHOUSE_PSEUDONYM_KEY" not in env_names(VALUES)
    # the README's `kubectl create secret` puts the key in a Secret the code location reads
    created = dict(re.findall(r"create secret generic (\S+) --from-literal=([\w-]+)=", README))
    assert created.get(VALUES["global"]["postgresqlSecretName"]) == "postgresql-password"
    assert any(created.get(name) == "LAKEHOUSE_PSEUDONYM_KEY" for name in secrets)
    annotations = VALUES["dagster-user-deployments"]["serviceAccount"]["annotations"]
    assert {"iam.gke.io/gcp-service-account", "eks.amazonaws.com/role-arn"} <= set(annotations)
    assert env_names(VALUES) & SECRET_ENV == set()  # no key: Google ADC and AWS roles, keys unset


def test_the_instance_config_is_accepted_by_the_locked_dagster(tmp_path):
    """The dagster.yaml parts these values make (the chart's QueuedRunCoordinator template, telemetry,
    additionalInstanceConfig), loaded by dagster's own instance-config validation."""
    from dagster._core.errors import DagsterInvalidConfigError
    from dagster._core.instance.config import ConcurrencyConfig, dagster_instance_config

    queued = VALUES["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    instance = {
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {
                "max_concurrent_runs": queued["maxConcurrentRuns"],
                "tag_concurrency_limits": queued["tagConcurrencyLimits"],
            },
        },
        "telemetry": {"enabled": VALUES["telemetry"]["enabled"]},
        **VALUES["additionalInstanceConfig"],
    }
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance))
    config, _ = dagster_instance_config(str(tmp_path))
    pools = ConcurrencyConfig.from_concurrency_settings(config["concurrency"], None).pool_config
    assert pools.default_pool_limit == 1  # as orchestration/dagster.yaml

    # the obvious alternative is refused next to the run coordinator's limits
    instance["concurrency"] = {"pools": {"default_limit": 1}}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance))
    with pytest.raises(DagsterInvalidConfigError, match="incompatible"):
        dagster_instance_config(str(tmp_path))


def test_the_image_has_the_libraries_of_the_charts_instance():
    """The chart's instance uses K8sRunLauncher and PostgreSQL storage: both libraries are locked,
    at the version of the other Dagster integrations."""
    versions = locked_versions()
    dagster_libs = versions["dagster-gcp"]
    assert versions.get("dagster-k8s") == dagster_libs and versions.get("dagster-postgres") == dagster_libs


# --------------------------------------------------------------------------------------------
# Dockerfile lint
# --------------------------------------------------------------------------------------------


def dockerfile() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments), continuations joined."""
    lines, current = [], ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        if not current and raw.lstrip().startswith("#"):
            continue
        current += raw.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        if current.strip():
            lines.append(current.strip())
        current = ""
    stages: list[list[tuple[str, str]]] = [[]]
    for line in lines:
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM" and stages[-1] and any(i == "FROM" for i, _ in stages[-1]):
            stages.append([])
        stages[-1].append((instruction.upper(), args.strip()))
    return stages


def builder_stage():
    return dockerfile()[0]


def final_stage():
    return dockerfile()[-1]


def dockerfile_env(stage) -> dict[str, str]:
    env = {}
    for instruction, args in stage:
        if instruction == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    return env


def arg_default(name: str) -> str:
    for stages in dockerfile():
        for instruction, args in stages:
            if instruction == "ARG" and args.startswith(f"{name}="):
                return args.split("=", 1)[1]
    raise AssertionError(f"no ARG {name}")


def context_copies() -> list[tuple[list[str], str]]:
    """The COPY instructions that read the build context (not --from another stage): (sources, dest)."""
    copies = []
    for stage in dockerfile():
        for instruction, args in stage:
            if instruction == "COPY" and "--from=" not in args:
                *sources, dest = [a for a in args.split() if not a.startswith("--")]
                copies.append((sources, dest))
    return copies


def test_dockerfile_uv_is_the_makefiles():
    assert arg_default("UV_VERSION") == makefile_uv_version()
    installs = [a for i, a in builder_stage() if i == "RUN" and "pip install" in a]
    assert installs and all("uv==${UV_VERSION}" in a for a in installs)


def uv_syncs() -> list[str]:
    return [a for i, a in builder_stage() if i == "RUN" and re.search(r"\buv sync\b", a)]


def test_dockerfile_installs_from_the_lock_file_without_dev_dependencies():
    assert uv_syncs()
    for command in uv_syncs():
        assert "--frozen" in command.split()
        if PYPROJECT.get("dependency-groups", {}).get("dev"):
            assert "--no-dev" in command.split()
    assert dockerfile_env(builder_stage())["UV_PYTHON_DOWNLOADS"] == "never"


def test_dockerfile_python_is_the_projects():
    requires = PYPROJECT["project"]["requires-python"]
    minor = re.search(r"(\d+\.\d+)", requires).group(1)
    assert arg_default("PYTHON_IMAGE").startswith(f"python:{minor}")
    assert dockerfile_env(builder_stage())["UV_PYTHON"].endswith(f"python{minor}")


def test_dockerfile_runs_as_a_non_root_user():
    users = [a for i, a in final_stage() if i == "USER"]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    if user.isdigit():  # Kubernetes runAsNonRoot/runAsUser in the values agree with it
        assert DEPLOYMENTS[0]["podSecurityContext"]["runAsUser"] == int(user)


def test_dockerfile_serves_the_workspace_module_on_the_values_port():
    (cmd,) = [json.loads(a) for i, a in final_stage() if i == "CMD"]
    assert cmd[:3] == ["dagster", "api", "grpc"]
    assert cmd[cmd.index("-m") + 1] == MODULE
    assert int(cmd[cmd.index("-p") + 1]) == DEPLOYMENTS[0]["port"]
    assert [a for i, a in final_stage() if i == "EXPOSE"] == [str(DEPLOYMENTS[0]["port"])]


def dockerignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def _pattern_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignored(rel: str, patterns: list[str]) -> bool:
    """Docker's rule as these patterns use it: the last matching pattern wins, `!` re-includes, and a
    pattern matching a directory matches everything under it."""
    parts = rel.strip("/").split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch(p) for p in prefixes):
            ignored = not negated
    return ignored


def test_every_copy_source_exists_and_is_in_the_build_context():
    patterns = dockerignore_patterns()
    copied = set()
    for sources, _ in context_copies():
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not dockerignored(source, patterns), f"{source} is excluded by {DOCKERIGNORE.name}"
            copied.add(source.strip("/"))
    # what the code location needs at import and run time: its packages, and the folders they read
    # next to them (sql/ and config/ via lakehouse, dbt_project/ via assets.marts), and the project files
    packages = {p.split("/")[0] for p in PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]}
    needed = packages | {
        "sql",
        "config",
        "dbt_project",
        "pyproject.toml",
        "uv.lock",
        "README.md",
        "workspace.yaml",
    }
    assert needed <= copied
    assert dockerignored("dbt_project/target/manifest.json", patterns)  # the image parses its own
    assert dockerignored(".venv/bin/python", patterns) and dockerignored("tests/test_deploy.py", patterns)


# --------------------------------------------------------------------------------------------
# The image's Python environment, from the lock file (slow)
# --------------------------------------------------------------------------------------------


def copy_build_context(app: Path) -> None:
    """The builder stage's COPYs from the repository, through the dockerignore, into `app` (its WORKDIR)."""
    patterns = dockerignore_patterns()
    for sources, dest in context_copies():
        if dest.startswith("/"):
            raise AssertionError(f"COPY to an absolute path: {dest}")
        for source in sources:
            src = ROOT / source
            files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
            for file in files:
                rel = file.relative_to(ROOT).as_posix()
                if dockerignored(rel, patterns):
                    continue
                target = app / dest / (file.name if src.is_file() else file.relative_to(src))
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target)


def image_env(stage, mapping: dict[str, str]) -> dict[str, str]:
    """A stage's ENV with the image paths mapped into the test's folders, on a clean base environment."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k in ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "XDG_CACHE_HOME")
    }
    env = dict(base)
    for name, value in dockerfile_env(stage).items():
        for image_path, local in mapping.items():
            value = value.replace(image_path, local)
        env[name] = value.replace("$PATH", base["PATH"])
    return env


@pytest.mark.slow
def test_the_image_environment_builds_from_the_lock_file_and_loads_the_code_location(tmp_path):
    from orchestration.definitions import defs

    uv_version = subprocess.run([UV, "--version"], capture_output=True, text=True, check=True).stdout.split()[
        1
    ]
    assert uv_version == arg_default("UV_VERSION")  # the repository's uv stands in for the image's
    app, lakehouse_home = tmp_path / "app", tmp_path / "var-lib-lakehouse"
    app.mkdir()
    lakehouse_home.mkdir()
    mapping = {"/app": str(app), "/var/lib/lakehouse": str(lakehouse_home)}
    timings = {}

    start = time.monotonic()
    copy_build_context(app)
    assert not (app / "dbt_project" / "target").exists()
    timings["copy"] = time.monotonic() - start

    # the builder's RUNs, in order: uv sync (the repository's uv, the running Python), dbt parse
    env = image_env(builder_stage(), mapping)
    env["UV_PYTHON"] = getattr(sys, "_base_executable", sys.executable)
    env["UV_OFFLINE"] = "1"  # from the warm uv cache `make env` filled: no registry traffic from the tests
    env["PATH"] = f"{UV.parent}:{env['PATH']}"
    for instruction, args in builder_stage():
        if instruction != "RUN" or "pip install" in args:
            continue
        command = re.sub(r"--mount=\S+\s*", "", args)
        start = time.monotonic()
        done = subprocess.run(
            ["bash", "-c", command], cwd=app, env=env, capture_output=True, text=True, timeout=600
        )
        step = "uv sync" if "uv sync" in command else "dbt parse" if "dbt parse" in command else command[:30]
        timings[f"{len(timings)}: {step}"] = time.monotonic() - start
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert (app / ".venv" / "bin" / "python").exists()
    assert (app / "dbt_project" / "target" / "manifest.json").is_file()

    # the final stage: its ENV and WORKDIR, the CMD's module imported by the image's interpreter
    probe = (
        "import importlib, json, sys; d = importlib.import_module(sys.argv[1]).defs; print(json.dumps("
        "{'jobs': sorted(j.name for j in d.jobs), 'sensors': sorted(s.name for s in d.sensors), "
        "'schedules': sorted(s.name for s in d.schedules)}))"
    )
    start = time.monotonic()
    done = subprocess.run(
        [app / ".venv" / "bin" / "python", "-c", probe, MODULE],
        cwd=app,
        env=image_env(final_stage(), mapping),
        capture_output=True,
        text=True,
        timeout=300,
    )
    timings["import"] = time.monotonic() - start
    assert done.returncode == 0, done.stderr[-5000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["jobs"] == sorted(j.name for j in defs.jobs)
    assert loaded["sensors"] == ["lake_sensor", "warehouse_hourly"]
    assert loaded["schedules"] == ["daily_marts", "daily_upkeep"]
    assert not (app / ".data").exists()  # nothing fell back to the embedded defaults' folder
    print("image environment timings (s):", {k: round(v, 1) for k, v in timings.items()})
