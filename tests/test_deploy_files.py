"""Deployment files: instance configs, Docker Compose, Dockerfiles, Helm values, GPU run tags.

Parsed with PyYAML and checked against Dagster's own schemas (instance config, dagster-k8s run
config); the GPU run tags and the Helm code-location settings are rendered into the
Kubernetes Job the K8sRunLauncher would submit. `docker-compose config` validates the compose
file when docker-compose is installed (no engine needed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from dagster._config import validate_config
from dagster._core.instance.config import (
    dagster_instance_config_schema,
    validate_concurrency_config,
)

ROOT = Path(__file__).resolve().parents[1]
PG_YAML = ROOT / "deploy" / "dagster.postgres.yaml"
DOCKER = ROOT / "docker"
HELM_VALUES = ROOT / "deploy" / "helm" / "values.yaml"
GPU_TAGS = ROOT / "deploy" / "k8s" / "gpu_run_tags.yaml"
K8S_CONFIG_TAG = "dagster-k8s/config"


def load(path: Path):
    return yaml.safe_load(path.read_text())


def assert_valid_instance_config(config: dict) -> None:
    result = validate_config(dagster_instance_config_schema(), config)
    assert result.success, [e.message for e in result.errors]
    validate_concurrency_config(config)


def gpu_run_tags() -> dict[str, str]:
    """The tag file as Dagster run tags: strings kept, mappings JSON-encoded."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in load(GPU_TAGS).items()}


# --- instance configs -----------------------------------------------------------------------

@pytest.mark.parametrize("path", [PG_YAML, DOCKER / "dagster.yaml"], ids=["deploy", "docker"])
def test_postgres_instance_config(path):
    config = load(path)
    assert_valid_instance_config(config)
    db = config["storage"]["postgres"]["postgres_db"]
    assert db["scheme"] == "postgresql+psycopg2"
    for field, var in (("hostname", "HOST"), ("port", "PORT"), ("username", "USER"),
                       ("password", "PASSWORD"), ("db_name", "DB")):
        assert db[field] == {"env": f"DAGSTER_PG_{var}"}, field
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"]["pools"]["default_limit"] == 1
    limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {"key": "freshness/gpu", "value": "true", "limit": 1} in limits
    assert {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True},
            "limit": 1} in limits
    assert config["retention"]["sensor"]["purge_after_days"]["skipped"] > 0
    assert config["nux"] == {"enabled": False}


def test_docker_instance_keeps_the_production_policies():
    deploy, docker = load(PG_YAML), load(DOCKER / "dagster.yaml")
    for section in ("storage", "run_coordinator", "concurrency", "retention", "run_retries",
                    "run_monitoring"):
        assert docker[section] == deploy[section], f"{section} drifted between the two files"
    assert docker["run_launcher"]["class"] == "DefaultRunLauncher"


def test_prune_runs_script_compiles():
    import py_compile

    py_compile.compile(str(ROOT / "deploy" / "prune_runs.py"), doraise=True)


# --- Docker -------------------------------------------------------------------------------

def test_compose_structure():
    compose = load(DOCKER / "docker-compose.yml")
    services = compose["services"]
    assert set(services) == {"postgres", "qdrant", "user_code", "user_code_gpu", "webserver",
                             "daemon"}
    assert "qdrant/qdrant:v" in services["qdrant"]["image"]  # the official image, pinned
    assert "healthcheck" in services["postgres"]

    workspace = load(DOCKER / "workspace.yaml")["load_from"][0]["grpc_server"]
    assert workspace["location_name"] == "retrieval_freshness"
    for name, dockerfile in (("user_code", "docker/Dockerfile"),
                             ("user_code_gpu", "docker/Dockerfile.cuda")):
        service = services[name]
        assert service["build"]["dockerfile"] == dockerfile
        assert workspace["host"] in service["networks"]["default"]["aliases"]
        env = service["environment"]
        assert env["FRESHNESS_QDRANT_URL"] == "http://qdrant:6333"
        assert env["DAGSTER_PG_HOST"] == "postgres"
        assert "QDRANT_API_KEY" in env
    assert services["user_code"]["profiles"] == ["cpu"]
    gpu = services["user_code_gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["environment"]["FRESHNESS_DEVICE"] == "cuda"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]

    assert services["webserver"]["command"][0] == "dagster-webserver"
    assert services["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    for name in ("webserver", "daemon"):
        assert "/opt/dagster/workspace.yaml" in services[name]["command"]
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    env_file = (DOCKER / ".env").read_text()
    assert "COMPOSE_PROFILES=cpu" in env_file


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    return [tuple(line.strip().split(None, 1)) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda", "Dockerfile.dagster"])
def test_dockerfiles_copy_files_that_exist(name):
    instructions = _dockerfile_instructions(DOCKER / name)
    assert instructions[0][0] == "FROM"
    for op, args in instructions:
        if op == "COPY":
            sources = args.split()[:-1]
            for source in sources:
                assert (ROOT / source).exists(), f"{name}: COPY {source} does not exist"
    ignore = (DOCKER / f"{name}.dockerignore").read_text().splitlines()
    copied = [s for op, a in instructions if op == "COPY" for s in a.split()[:-1]]
    for source in copied:
        assert any(line.lstrip("!").rstrip("/*") == source.rstrip("/") for line in ignore
                   if line.startswith("!")), f"{source} is excluded by {name}.dockerignore"


def test_code_images_serve_the_workspace_port_and_torch_spec():
    port = load(DOCKER / "workspace.yaml")["load_from"][0]["grpc_server"]["port"]
    for name in ("Dockerfile", "Dockerfile.cuda"):
        instructions = dict(_dockerfile_instructions(DOCKER / name)[::-1])  # first wins
        assert instructions["EXPOSE"] == str(port)
        cmd = json.loads(instructions["CMD"])
        assert cmd[:3] == ["dagster", "code-server", "start"]
        assert cmd[cmd.index("-p") + 1] == str(port)
        assert cmd[cmd.index("-m") + 1] == "definitions"
        text = (DOCKER / name).read_text()
        assert 'ARG TORCH_SPEC="torch==' in text


DOCKER_COMPOSE = shutil.which("docker-compose")


@pytest.mark.skipif(DOCKER_COMPOSE is None,
                    reason="docker-compose is not on PATH (apt-get install docker-compose)")
def test_docker_compose_config_validates():
    env = {k: v for k, v in os.environ.items()
           if k not in ("DAGSTER_PG_PASSWORD", "QDRANT_API_KEY")}
    cmd = [DOCKER_COMPOSE, "-f", str(DOCKER / "docker-compose.yml"), "config", "-q"]
    missing = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "DAGSTER_PG_PASSWORD" in missing.stderr
    env.update(DAGSTER_PG_PASSWORD="test-password", QDRANT_API_KEY="test-key")
    for profiles in ("cpu", "gpu"):
        result = subprocess.run(cmd, env={**env, "COMPOSE_PROFILES": profiles},
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr


# --- Kubernetes -----------------------------------------------------------------------------

def test_helm_values_structure_and_instance_config():
    values = load(HELM_VALUES)
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    for required in ("imagePullPolicy", "loadInclusterConfig", "envConfigMaps", "envSecrets",
                     "envVars", "volumeMounts", "volumes"):  # required by the chart's schema
        assert required in launcher, required
    deployments = values["dagster-user-deployments"]["deployments"]
    assert len(deployments) == 1
    code = deployments[0]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", code["name"])  # a k8s name
    assert code["codeServerArgs"] == ["-m", "definitions", "-a", "defs"]
    assert code["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert code["image"]["tag"] != "latest"
    env = {e["name"]: e for e in code["env"]}
    assert env["FRESHNESS_QDRANT_URL"]["value"].startswith("https://")
    assert env["QDRANT_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "freshness-qdrant"
    assert "value" not in env["QDRANT_API_KEY"]
    assert env["FRESHNESS_STATE_ROOT"]["value"].startswith("s3://")
    assert env["FRESHNESS_REEMBED_RUN_TAGS"]["value"].endswith("deploy/k8s/gpu_run_tags.yaml")
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    assert values["postgresql"]["enabled"] is False

    # The instance config the chart writes from these values must be one Dagster accepts:
    # a QueuedRunCoordinator without config, and all limits under `concurrency`.
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == "QueuedRunCoordinator"
    assert not any(coordinator["config"]["queuedRunCoordinator"].values())
    instance = {
        "run_coordinator": {"module": "dagster.core.run_coordinator",
                            "class": "QueuedRunCoordinator"},
        **values["additionalInstanceConfig"],
    }
    assert_valid_instance_config(instance)
    gpu_limit = next(lim for lim in instance["concurrency"]["runs"]["tag_concurrency_limits"]
                     if lim["key"] == "freshness/gpu")
    assert gpu_limit["limit"] == instance["concurrency"]["pools"]["default_limit"]
    assert values["dagsterDaemon"]["runMonitoring"]["startTimeoutSeconds"] >= 600
    assert set(values["retention"]) >= {"enabled", "sensor", "schedule"}


def _camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def render_run_pod(tags: dict[str, str]) -> dict:
    """The Kubernetes Job manifest K8sRunLauncher would create for a run with these tags."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (
        DagsterK8sJobConfig,
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
        get_user_defined_k8s_config,
    )
    from kubernetes.client import ApiClient

    run_tag_config = get_user_defined_k8s_config(tags)  # validates against dagster-k8s' schema

    # What the Helm chart hands the launcher (runK8sConfig) and the code location
    # (includeConfigInLaunchedRuns: env, volumes, ...), merged the way K8sRunLauncher does.
    values = load(HELM_VALUES)
    launcher_run_config = {_camel_to_snake(k): v for k, v in values["runLauncher"]["config"]
                           ["k8sRunLauncher"]["runK8sConfig"].items()}
    code = values["dagster-user-deployments"]["deployments"][0]
    code_context = K8sContainerContext.create_from_config({"k8s": {
        "env": code["env"], "volumes": code["volumes"], "volume_mounts": code["volumeMounts"],
    }})
    context = K8sContainerContext(
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(launcher_run_config),
    ).merge(code_context.merge(K8sContainerContext(run_k8s_config=run_tag_config)))
    job = construct_dagster_k8s_job(
        DagsterK8sJobConfig(job_image="registry.example.com/retrieval-freshness-code:cuda-1",
                            dagster_home="/opt/dagster/dagster_home",
                            instance_config_map="freshness-dagster-instance"),
        args=["dagster", "api", "execute_run", "{}"], job_name="dagster-run-test",
        user_defined_k8s_config=context.run_k8s_config, component="run_worker")
    return ApiClient().sanitize_for_serialization(job)


def test_gpu_run_tags_render_a_gpu_pod():
    pytest.importorskip("dagster_k8s", reason="dagster-k8s is not installed")
    tags = gpu_run_tags()
    assert tags["freshness/gpu"] == "true"
    manifest = render_run_pod(tags)
    pod = manifest["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
        pod["tolerations"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    env = {e["name"]: e for e in container["env"]}
    assert env["FRESHNESS_DEVICE"]["value"] == "cuda"
    assert env["QDRANT_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "api-key"
    assert env["FRESHNESS_STATE_ROOT"]["value"].startswith("s3://")
    assert any(m["mountPath"] == "/data/corpus" for m in container["volumeMounts"])
    assert manifest["spec"]["backoffLimit"] == 0
    assert manifest["spec"]["ttlSecondsAfterFinished"] == 86400


def test_reembed_job_carries_gpu_tags_when_configured(monkeypatch):
    """Once assets/jobs.py reads FRESHNESS_REEMBED_RUN_TAGS (see docs/deployment.md)."""
    import assets.jobs as jobs

    if not hasattr(jobs, "reembed_run_tags"):
        pytest.skip("assets.jobs.reembed_run_tags is not defined yet")
    monkeypatch.setenv("FRESHNESS_REEMBED_RUN_TAGS", str(GPU_TAGS))
    assert jobs.reembed_run_tags() == gpu_run_tags()
    monkeypatch.delenv("FRESHNESS_REEMBED_RUN_TAGS")
    assert jobs.reembed_run_tags() == {"freshness/gpu": "true"}
    assert jobs.reembed_job.tags.get("freshness/gpu") == "true"


def test_a_retire_run_asks_for_no_gpu(monkeypatch):
    """A run that only retires a shard gone from the source embeds nothing: its request's tags
    override the re-embedding job's GPU tags (the daemon merges job tags, then the request's),
    so it takes no GPU slot in the run queue and its pod has no GPU, no GPU node selector or
    toleration, and still the code location's env and volumes."""
    pytest.importorskip("dagster_k8s", reason="dagster-k8s is not installed")
    import assets.jobs as jobs

    monkeypatch.setenv("FRESHNESS_REEMBED_RUN_TAGS", str(GPU_TAGS))
    request = jobs.retire_request("7.3/CimCmdlets")
    assert request.partition_key == "7.3/CimCmdlets" and request.run_key.startswith("retire-")
    tags = {**jobs.reembed_run_tags(), **request.tags}
    assert tags["freshness/gpu"] == "false"
    pod = render_run_pod(tags)["spec"]["template"]["spec"]
    assert "nvidia.com/gpu.present" not in (pod.get("nodeSelector") or {})
    assert not any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations") or [])
    container = pod["containers"][0]
    resources = container.get("resources") or {}
    assert "nvidia.com/gpu" not in {**resources.get("limits", {}), **resources.get("requests", {})}
    env = {e["name"]: e for e in container["env"]}
    assert "FRESHNESS_DEVICE" not in env and env["FRESHNESS_STATE_ROOT"]["value"].startswith("s3://")
    assert any(m["mountPath"] == "/data/corpus" for m in container["volumeMounts"])
