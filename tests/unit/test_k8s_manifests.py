"""deploy/k8s, validated offline: TrainJob and JobSet against kubeflow-trainer-api's models, the pods inside against Kubernetes' strict schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from dllab import train_worker

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
FLAVOURS = ("cpu", "cuda")

trainer_models = pytest.importorskip(
    "kubeflow_trainer_api.models", reason="pip install -e '.[dev]' (kubeflow-trainer-api)"
)
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="pip install -e '.[dev]' (kubernetes-validate)"
)


def by_digest(image: str, flavour: str) -> bool:
    """Whether `image` is a registry's dllab:<flavour> by digest (`invoke publish --deploy`)."""
    return bool(
        re.fullmatch(rf"[^@\s]+/dllab:{flavour}(-[0-9a-f]{{12}})?@sha256:[0-9a-f]{{64}}", image)
    )


def load(name: str) -> dict:
    [doc] = list(yaml.safe_load_all((K8S / name).read_text()))
    return doc


def strict(obj: dict) -> None:
    """Kubernetes' own schema, strict: an unknown or misspelt field fails."""
    kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


def round_trip(model, doc: dict) -> None:
    """The typed model keeps every field: nothing in `doc` was unknown to it (a typo would vanish)."""
    parsed = model.from_dict(doc)
    assert parsed is not None
    assert json.loads(parsed.to_json()) == doc


def env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def assert_non_root(pod_spec: dict, container: dict) -> None:
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_every_manifest_is_tested():
    assert sorted(p.name for p in K8S.glob("*.yaml")) == sorted(
        f"{fw}-{fl}.yaml" for fw in ("torch", "tensorflow") for fl in FLAVOURS
    )


# --- torch: a Kubeflow Trainer v2 TrainJob ----------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_torch_trainjob_is_a_valid_trainer_v2_object(flavour):
    doc = load(f"torch-{flavour}.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    round_trip(trainer_models.TrainerV1alpha1TrainJob, doc)
    spec = doc["spec"]
    assert spec["runtimeRef"] == {"name": "torch-distributed"}
    trainer = spec["trainer"]
    assert by_digest(trainer["image"], flavour)
    assert trainer["numNodes"] == 2 and trainer["numProcPerNode"] == 1
    # torchrun reads nodes, rank and master from the runtime's PET_* variables.
    assert trainer["command"][:3] == ["torchrun", "-m", "dllab.train_worker"]
    assert trainer["command"][3:5] == ["--framework", "torch"]
    assert "--standalone" not in trainer["command"]
    gpus = trainer["resourcesPerNode"].get("limits", {}).get("nvidia.com/gpu")
    if flavour == "cuda":
        assert gpus == 1 and "DLLAB_DEVICE" not in env(trainer)  # NCCL on the node's GPU
    else:
        assert gpus is None and env(trainer)["DLLAB_DEVICE"] == "cpu"  # gloo


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_torch_trainjob_pod_is_non_root_and_valid_kubernetes(flavour):
    """The pod the runtime makes, with dllab's patch applied, passes Kubernetes' strict schema."""
    doc = load(f"torch-{flavour}.yaml")
    [patch] = doc["spec"]["runtimePatches"]
    [job] = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert job["name"] == "node"  # the torch-distributed runtime's replicated job and container
    pod_patch = job["template"]["spec"]["template"]["spec"]
    [container_patch] = pod_patch["containers"]
    trainer = doc["spec"]["trainer"]
    container = {
        "name": container_patch["name"],
        "image": trainer["image"],
        "command": trainer["command"],
        "env": trainer["env"],
        "resources": trainer["resourcesPerNode"],
        "securityContext": container_patch["securityContext"],
    }
    pod_spec = {"securityContext": pod_patch["securityContext"], "containers": [container]}
    assert_non_root(pod_spec, container)
    strict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "node"}, "spec": pod_spec})


# --- TensorFlow: a JobSet with an Indexed Job, TF_CONFIG made per pod ---------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_tensorflow_jobset_is_valid(flavour):
    doc = load(f"tensorflow-{flavour}.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("jobset.x-k8s.io/v1alpha2", "JobSet")
    round_trip(trainer_models.JobsetV1alpha2JobSet, doc)
    assert doc["spec"]["network"]["enableDNSHostnames"] is True
    for replicated in doc["spec"]["replicatedJobs"]:
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": f"{doc['metadata']['name']}-{replicated['name']}-0"},
            "spec": replicated["template"]["spec"],
        }
        strict(job)
        pod_spec = job["spec"]["template"]["spec"]
        [container] = pod_spec["containers"]
        assert_non_root(pod_spec, container)
        assert by_digest(container["image"], flavour)
        assert container["command"][:3] == ["python", "-m", "dllab.train_worker"]
        gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
        assert gpus == (1 if flavour == "cuda" else None)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_tensorflow_jobset_gives_each_pod_a_tf_config_naming_its_peers(flavour):
    """DLLAB_TF_WORKERS lists exactly the pods' JobSet DNS names; each pod's index makes its TF_CONFIG."""
    doc = load(f"tensorflow-{flavour}.yaml")
    name = doc["metadata"]["name"]
    [replicated] = doc["spec"]["replicatedJobs"]
    job = replicated["template"]["spec"]
    assert job["completionMode"] == "Indexed" and job["parallelism"] == job["completions"]
    [container] = job["template"]["spec"]["containers"]
    [port] = [p["containerPort"] for p in container["ports"]]
    hosts = [f"{name}-{replicated['name']}-0-{i}.{name}:{port}" for i in range(job["completions"])]
    assert env(container)["DLLAB_TF_WORKERS"].split(",") == hosts
    for index in range(job["completions"]):
        pod_env = dict(env(container), JOB_COMPLETION_INDEX=str(index))
        config = json.loads(train_worker.tf_config_from(pod_env))
        assert config == {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}


def test_tf_config_given_wins_and_none_without_workers():
    assert train_worker.tf_config_from({"TF_CONFIG": "{}", "DLLAB_TF_WORKERS": "a:1"}) == "{}"
    assert train_worker.tf_config_from({}) is None
