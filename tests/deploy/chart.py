"""What Dagster's Helm chart (1.13.27) makes of deploy/dagster/values.yaml, for the parts the contract
tests need, written out as the chart's templates render them (no `helm` binary comes from the package
registries this project installs from, so the templates cannot run here):

- the instance's run launcher, run coordinator, run monitoring, run retries and concurrency sections
  (templates/helpers/instance/*.tpl: camelCase values become the snake_case instance config);
- the container context the chart hands the code server of a user deployment
  (`DAGSTER_CONTAINER_CONTEXT`, charts/dagster-user-deployments/templates/helpers/_helpers.tpl), which
  every run launched from that code location merges over the launcher's settings.

A release named `dagster` in the namespace `keel`, as deploy/README.md installs it.
"""

from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO

VALUES_FILE = REPO / "deploy" / "dagster" / "values.yaml"
RELEASE = "dagster"
NAMESPACE = "keel"
FULLNAME = RELEASE  # the chart's fullname when the release name contains the chart name
# The subchart's fullname: its chart name does not contain the release name, so both are joined.
USER_DEPLOYMENTS_FULLNAME = f"{RELEASE}-dagster-user-deployments"
SERVICE_ACCOUNT = RELEASE  # dagster.serviceAccountName with serviceAccount.name unset
DAGSTER_HOME = "/opt/dagster/dagster_home"  # the chart's default global.dagsterHome


def load_values(path: Path = VALUES_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def user_deployment(values: dict[str, Any], name: str = "keel") -> dict[str, Any]:
    deployments = values["dagster-user-deployments"]["deployments"]
    matches = [d for d in deployments if d["name"] == name]
    assert len(matches) == 1, f"values.yaml has {len(matches)} user deployments named {name!r}"
    return matches[0]


def image_name(image: dict[str, Any]) -> str:
    return f"{image['repository']}:{image['tag']}"


def _names(refs: list[dict[str, Any]]) -> list[str]:
    return [ref["name"] for ref in refs if "name" in ref]


def run_launcher_config(values: dict[str, Any]) -> dict[str, Any]:
    """`run_launcher.config` of the instance ConfigMap (K8sRunLauncher)."""
    launcher = values["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher", launcher["type"]
    k8s = launcher["config"]["k8sRunLauncher"]
    config: dict[str, Any] = {
        "load_incluster_config": k8s["loadInclusterConfig"],
        "job_namespace": k8s.get("jobNamespace") or NAMESPACE,
        "image_pull_policy": k8s["imagePullPolicy"],
        "service_account_name": SERVICE_ACCOUNT,
        "dagster_home": values.get("global", {}).get("dagsterHome", DAGSTER_HOME),
        "instance_config_map": f"{FULLNAME}-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
    }
    if k8s.get("kubeconfigFile"):
        config["kubeconfig_file"] = k8s["kubeconfigFile"]
    optional = {
        "envConfigMaps": ("env_config_maps", _names),
        "envSecrets": ("env_secrets", _names),
        "envVars": ("env_vars", list),
        "volumeMounts": ("volume_mounts", list),
        "volumes": ("volumes", list),
        "labels": ("labels", dict),
        "failPodOnRunFailure": ("fail_pod_on_run_failure", bool),
        "resources": ("resources", dict),
        "schedulerName": ("scheduler_name", str),
        "securityContext": ("security_context", dict),
    }
    for key, (name, convert) in optional.items():
        if k8s.get(key):
            config[name] = convert(k8s[key])
    if k8s.get("runK8sConfig"):
        run_k8s = k8s["runK8sConfig"]
        sections = {
            "containerConfig": "container_config",
            "podSpecConfig": "pod_spec_config",
            "podTemplateSpecMetadata": "pod_template_spec_metadata",
            "jobSpecConfig": "job_spec_config",
            "jobMetadata": "job_metadata",
        }
        config["run_k8s_config"] = {sections[key]: value for key, value in run_k8s.items() if value}
    return config


def container_context(values: dict[str, Any], deployment: dict[str, Any]) -> dict[str, Any]:
    """The code server's container context: what runs from this code location get on top of the launcher's."""
    k8s: dict[str, Any] = {
        "image_pull_policy": deployment["image"]["pullPolicy"],
        "env_config_maps": [
            f"{USER_DEPLOYMENTS_FULLNAME}-{deployment['name']}-user-env",
            *_names(deployment.get("envConfigMaps", [])),
        ],
        "namespace": NAMESPACE,
        "service_account_name": f"{USER_DEPLOYMENTS_FULLNAME}-user-deployments",
    }
    for key, name in {
        "envSecrets": "env_secrets",
        "volumeMounts": "volume_mounts",
        "volumes": "volumes",
        "labels": "labels",
        "resources": "resources",
        "schedulerName": "scheduler_name",
    }.items():
        if deployment.get(key):
            k8s[name] = _names(deployment[key]) if key == "envSecrets" else deployment[key]
    if isinstance(deployment.get("env"), list) and deployment["env"]:
        k8s["env"] = deployment["env"]
    return {"k8s": k8s}


def run_coordinator(values: dict[str, Any]) -> dict[str, Any]:
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator", coordinator
    queued = coordinator["config"]["queuedRunCoordinator"] or {}
    names = {
        "maxConcurrentRuns": "max_concurrent_runs",
        "tagConcurrencyLimits": "tag_concurrency_limits",
        "dequeueIntervalSeconds": "dequeue_interval_seconds",
    }
    config = {names[key]: value for key, value in queued.items() if key in names and value}
    section: dict[str, Any] = {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}
    if config:
        section["config"] = config
    return section


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def run_monitoring(values: dict[str, Any]) -> dict[str, Any]:
    """`run_monitoring` of the instance ConfigMap: the keys the chart's template renders, and only those
    (it renders no max_runtime_seconds: the run's time limit is the Job's activeDeadlineSeconds)."""
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    if not monitoring.get("enabled"):
        return {}
    section = {
        "enabled": True,
        "start_timeout_seconds": monitoring["startTimeoutSeconds"],
        "poll_interval_seconds": monitoring["pollIntervalSeconds"],
        "free_slots_after_run_end_seconds": monitoring["freeSlotsAfterRunEndSeconds"],
    }
    for key in ("cancelTimeoutSeconds", "maxResumeRunAttempts"):
        if monitoring.get(key) is not None:
            section[_snake(key)] = monitoring[key]
    return section


def run_retries(values: dict[str, Any]) -> dict[str, Any]:
    retries = values["dagsterDaemon"]["runRetries"]
    if not retries.get("enabled"):
        return {}
    section: dict[str, Any] = {"enabled": True}
    if retries.get("maxRetries"):
        section["max_retries"] = retries["maxRetries"]
    return section


def concurrency(values: dict[str, Any]) -> dict[str, Any]:
    """The instance's `concurrency` section (templates/helpers/instance/_concurrency.tpl)."""
    settings = values.get("concurrency", {})
    if not settings.get("enabled"):
        return {}
    pools = {_snake(key): value for key, value in settings.get("pools", {}).items() if value is not None}
    runs = {_snake(key): value for key, value in settings.get("runs", {}).items() if value not in (None, [])}
    return {name: section for name, section in {"pools": pools, "runs": runs}.items() if section}
