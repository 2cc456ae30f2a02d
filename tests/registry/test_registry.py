"""A real registry (Debian's docker-registry 2.8: TLS from a CA the engine trusts, htpasswd
logins) and dllab against it: `invoke publish`, then `invoke lab` pulls that very image and it
starts; a registry with another lock's tag only leads to a build; the index lists both platforms;
bad input is one line. These run after the arm64 image is built (.ci/run sets
DLLAB_REGISTRY_TESTS=1 there) and publish copies of this tree's images, never dllab:cpu itself."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from dllab import containers, locks, registry, variants
from dllab.containers import Owner
from dllab.variants import ROOT
from tests.support import missing

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CPU = variants.get("cpu")
PULLED = "dllab-pulltest"  # the local name the round trip publishes and pulls
STALE = "dllab-staletest"  # a name whose registry tag is another lock's
USER = "teacher"
CERTS = Path("/etc/docker/certs.d")  # where the engine (and `docker manifest`) trust a CA


def docker(*args: str, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    return subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=900)  # fmt: skip


def invoke(*args: str, env: dict) -> subprocess.CompletedProcess:
    """A real `invoke` process with `env` over this test's environment, and no desktop."""
    headless = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "DLLAB_TASKS_PROGRAM")}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "invoke", "-r", str(ROOT), *args],
                          capture_output=True, text=True, timeout=1200, env={**headless, **env})  # fmt: skip


def one_line(result: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2, its last line `dllab: ...` with `words`, and never a traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("dllab: ") and all(w in last for w in words), result.stderr


def bridge_address() -> str:
    """This host's address on the engine's default bridge (docker0): local, and not loopback,
    which `docker manifest push` would speak plain HTTP to (docker/cli treats loopback
    registries as insecure)."""
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", "docker0"], capture_output=True, text=True)  # fmt: skip
    found = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", shown.stdout)
    if not found:
        missing("registry", "no docker0 bridge address for the test registry: start dockerd with its default bridge")  # fmt: skip
    return found.group(1)


@dataclass
class Server:
    address: str  # HOST:PORT
    password: str
    docker_config: Path  # a DOCKER_CONFIG logged in to it

    @property
    def name(self) -> str:
        return f"{self.address}/class"

    def env(self, **more: str) -> dict:
        return {"DOCKER_CONFIG": str(self.docker_config), **more}

    def config_with(self, tmp: Path, user: str, password: str) -> Path:
        """A DOCKER_CONFIG holding `user`:`password` for this registry (as `docker login` stores it)."""
        tmp.mkdir(parents=True, exist_ok=True)
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        (tmp / "config.json").write_text(json.dumps({"auths": {self.address: {"auth": auth}}}))
        return tmp


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """docker-registry serving TLS (a CA made here, trusted by the engine) with htpasswd logins on
    this host's bridge address, started and stopped by this fixture; a DOCKER_CONFIG logged in."""
    if not os.environ.get("DLLAB_REGISTRY_TESTS"):
        missing("registry", "the registry tests publish real images (minutes): set DLLAB_REGISTRY_TESTS=1 (.ci/run does, after the arm64 build)")  # fmt: skip
    if not shutil.which("docker-registry"):
        missing("registry", "no docker-registry here: apt-get install docker-registry")
    if os.geteuid() != 0:
        missing("registry", f"the engine trusts a registry's CA from {CERTS}, which only root may write")  # fmt: skip
    if not containers.engine_answers():
        missing("docker", "no Docker engine answers (start one: .ci/engine)")
    import bcrypt

    tmp = tmp_path_factory.mktemp("registry")
    host = bridge_address()
    address = f"{host}:{containers.any_free_port(host)}"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=dllab test CA",
            "-keyout", str(tmp / "ca.key"), "-out", str(tmp / "ca.crt"))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}",
            "-keyout", str(tmp / "server.key"), "-out", str(tmp / "server.csr"))  # fmt: skip
    (tmp / "san.cnf").write_text(f"subjectAltName=IP:{host}\n")
    openssl("x509", "-req", "-in", str(tmp / "server.csr"), "-CA", str(tmp / "ca.crt"), "-CAkey",
            str(tmp / "ca.key"), "-CAcreateserial", "-days", "2", "-extfile", str(tmp / "san.cnf"),
            "-out", str(tmp / "server.crt"))  # fmt: skip
    password = secrets.token_urlsafe(18)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=6)).decode()
    (tmp / "htpasswd").write_text(f"{USER}:{hashed}\n")
    (tmp / "config.yml").write_text(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {tmp / "data"}
http:
  addr: {address}
  secret: {secrets.token_hex(16)}
  tls:
    certificate: {tmp / "server.crt"}
    key: {tmp / "server.key"}
auth:
  htpasswd:
    realm: dllab-test
    path: {tmp / "htpasswd"}
""")
    trusted = CERTS / address
    trusted.mkdir(parents=True)
    shutil.copy(tmp / "ca.crt", trusted / "ca.crt")
    log = (tmp / "registry.log").open("w")
    process = subprocess.Popen(["docker-registry", "serve", str(tmp / "config.yml")],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        context = ssl.create_default_context(cafile=str(tmp / "ca.crt"))
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"https://{address}/v2/", context=context, timeout=2)
            except urllib.error.HTTPError as answer:
                assert answer.code == 401  # it answers, and asks for a login
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp / "registry.log").read_text()
                time.sleep(0.2)
        config = tmp / "docker-config"
        config.mkdir()
        login = docker("login", address, "--username", USER, "--password-stdin",
                       env={"DOCKER_CONFIG": str(config)}, stdin=password)  # fmt: skip
        assert login.returncode == 0, login.stderr
        yield Server(address, password, config)
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()
        shutil.rmtree(trusted, ignore_errors=True)


def source_images() -> dict[str, str]:
    """This tree's cpu images (`invoke build`; .ci/arm64 for arm64), by platform: both required."""
    found = {}
    for platform in CPU.platforms:
        image = containers.image_tag(CPU, platform)
        if docker("image", "inspect", image).returncode:
            what = "image-cpu-arm64" if platform == "linux-aarch64" else "image-cpu"
            missing(what, f"no {image}: `invoke build --variant cpu --platform {platform}` (.ci/run builds both)")  # fmt: skip
        found[platform] = image
    return found


def image_id(image: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()


def renamed(name: str, image: str) -> str:
    """`image` (this tree's name) as it is called under DLLAB_IMAGE_NAME=`name`."""
    return name + image[len(variants.image_name()) :]


@pytest.fixture(scope="module")
def published(server):
    """`invoke publish` of copies of this tree's images (named dllab-pulltest); its result and
    the pushed images' IDs by platform."""
    sources = source_images()
    copies = {p: renamed(PULLED, image) for p, image in sources.items()}
    for platform, image in sources.items():
        assert docker("tag", image, copies[platform]).returncode == 0
    try:
        started = time.monotonic()
        result = invoke("publish", "--variant", "cpu", "--registry", server.name, env=server.env(DLLAB_IMAGE_NAME=PULLED))  # fmt: skip
        print(f"invoke publish: {time.monotonic() - started:.0f} s\n{result.stderr}")
        assert result.returncode == 0, result.stdout + result.stderr
        yield result, {p: image_id(image) for p, image in sources.items()}
    finally:
        for copy in copies.values():
            docker("rmi", copy)


def lab_env(server: Server, name: str, tmp_path: Path, **more: str) -> dict:
    """`invoke lab`'s environment: images named `name`, this registry, a lab instance of its own."""
    return {
        **server.env(DLLAB_IMAGE_NAME=name, DLLAB_REGISTRY=server.name),
        "DLLAB_STATE": str(tmp_path / "state"), "DLLAB_INSTANCE": f"test-{uuid.uuid4().hex[:8]}",
        **more,
    }  # fmt: skip


def lab_container(env: dict) -> str:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DLLAB_INSTANCE", env["DLLAB_INSTANCE"])
        return containers.container_name(CPU, Owner.current())


def test_invoke_lab_pulls_the_published_image_and_it_is_the_pushed_one(server, published, tmp_path):
    """The round trip: publish; the local tag removed; `invoke lab` pulls the tag of these locks
    (and says so), JupyterLab answers at its URL, doctor inside says cpu, and the pulled image's ID
    is the pushed image's."""
    _, pushed = published
    local = renamed(PULLED, CPU.image)
    assert docker("rmi", local).returncode == 0
    env = lab_env(server, PULLED, tmp_path)
    started = time.monotonic()
    lab = invoke("lab", "--variant", "cpu", "--work", str(tmp_path / "work"), "--no-browser", env=env)  # fmt: skip
    print(f"invoke lab, pulling: {time.monotonic() - started:.0f} s")
    try:
        assert lab.returncode == 0, lab.stdout + lab.stderr
        assert f"pulled {local} (" in lab.stderr and not re.search(
            "building it (now|here)", lab.stderr
        )
        url = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=([\w-]+)", lab.stdout)
        assert url, lab.stdout
        status = f"http://127.0.0.1:{url.group(1)}/api/status?token={url.group(2)}"
        assert urllib.request.urlopen(status, timeout=10).status == 200
        doctor = docker("exec", lab_container(env), "python", "-m", "dllab", "doctor", "--expect", "cpu", "--json")  # fmt: skip
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        report = json.loads(doctor.stdout)
        assert report["expect"] == "cpu" and report["system"]["accelerator"] == "cpu"
        assert report["problems"] == []
        assert image_id(local) == pushed["linux-x86_64"]
    finally:
        invoke("lab", "--stop", "--variant", "cpu", env=env)


def test_the_index_lists_both_platforms_under_the_lock_tag_and_cpu(server, published):
    """REGISTRY/dllab:cpu-<locks> and :cpu are one index of linux/amd64 and linux/arm64, each
    entry the pushed image of that platform; publish printed the index's digest to pin."""
    result, _ = published
    repo = f"{server.name}/{PULLED}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DLLAB_IMAGE_NAME", PULLED)
        tag = registry.tag(CPU)
    lists = {}
    for name in (tag, "cpu"):
        shown = docker("manifest", "inspect", f"{repo}:{name}", env=server.env())
        assert shown.returncode == 0, shown.stderr
        lists[name] = json.loads(shown.stdout)
    assert lists[tag] == lists["cpu"]
    platforms = {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in lists[tag]["manifests"]}  # fmt: skip
    assert set(platforms) == {"linux/amd64", "linux/arm64"}
    for platform, docker_platform in (("linux-x86_64", "linux/amd64"), ("linux-aarch64", "linux/arm64")):  # fmt: skip
        one = docker(
            "manifest", "inspect", "--verbose", f"{repo}:{tag}-{platform}", env=server.env()
        )
        assert json.loads(one.stdout)["Descriptor"]["digest"] == platforms[docker_platform]
    pinned = re.search(rf"by digest, for a cluster: {re.escape(repo)}:{tag}@(sha256:[0-9a-f]{{64}})", result.stderr)  # fmt: skip
    assert pinned, result.stderr
    request = urllib.request.Request(f"https://{server.address}/v2/class/{PULLED}/manifests/{pinned.group(1)}", method="HEAD")  # fmt: skip
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{USER}:{server.password}".encode()).decode())  # fmt: skip
    request.add_header("Accept", "application/vnd.docker.distribution.manifest.list.v2+json")
    context = ssl.create_default_context(cafile=str(CERTS / server.address / "ca.crt"))
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:
        assert answer.headers["Docker-Content-Digest"] == pinned.group(1)


def test_a_registry_with_only_another_locks_tag_leads_to_a_build(server, published, tmp_path):
    """The registry holds dllab-staletest:cpu-000000000000 only (another lock's tag): `invoke lab`
    says the tag of its locks is absent, builds the image here (from the wheelhouse) and starts;
    the image it runs is its own lock's, nothing was pulled."""
    source = CPU.image
    stale = f"{server.name}/{STALE}:cpu-000000000000"
    assert docker("tag", source, stale).returncode == 0
    pushed = docker("push", stale, env=server.env())
    docker("rmi", stale)
    assert pushed.returncode == 0, pushed.stderr
    env = lab_env(server, STALE, tmp_path)
    wheels = containers.wheels_image(CPU, "linux-x86_64")
    with (
        pytest.MonkeyPatch.context() as patch
    ):  # the wheelhouse, under the test's name where it follows it
        patch.setenv("DLLAB_IMAGE_NAME", STALE)
        own_wheels = containers.wheels_image(CPU, "linux-x86_64")
    if own_wheels != wheels:
        docker("tag", wheels, own_wheels)
    local = renamed(STALE, CPU.image)
    started = time.monotonic()
    lab = invoke("lab", "--variant", "cpu", "--work", str(tmp_path / "work"), "--no-browser", env=env)  # fmt: skip
    print(f"invoke lab, building: {time.monotonic() - started:.0f} s")
    try:
        assert lab.returncode == 0, lab.stdout + lab.stderr
        absent = f"has no {server.name}/{STALE}:{registry.tag(CPU)} (linux-x86_64): building it here instead"  # fmt: skip
        assert absent in lab.stderr and f"built {local} (" in lab.stderr
        assert "pulled" not in lab.stderr
        labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", local).stdout)  # fmt: skip
        assert labels[registry.LOCK_LABEL] == locks.file_digest(CPU, "linux-x86_64")
    finally:
        invoke("lab", "--stop", "--variant", "cpu", env=env)
        built = [line.split()[0] for line in docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", STALE).stdout.split("\n") if line]  # fmt: skip
        for tag in built:
            docker("rmi", tag)
        if own_wheels != wheels:
            docker("rmi", own_wheels)


def test_bad_registry_input_is_one_line_and_exit_2(server, published, tmp_path):
    """A scheme, a registry that does not answer, no login, wrong credentials (publish and pull)
    and a tag the registry lacks: one `dllab:` line each, exit 2, nothing built."""
    host = server.address.rsplit(":", 1)[0]
    closed = f"{host}:{containers.any_free_port(host)}/class"
    publish = ("publish", "--variant", "cpu", "--registry")
    wrong = server.config_with(tmp_path / "wrong", USER, "not-" + server.password)
    nobody = server.config_with(tmp_path / "nobody", USER, server.password)
    (nobody / "config.json").write_text("{}")
    copy = renamed(PULLED, CPU.image)
    docker("tag", CPU.image, copy)  # a local image to publish, whatever the tests before did
    named = {"DLLAB_IMAGE_NAME": PULLED}
    one_line(invoke(*publish, f"https://{server.name}", env=server.env(**named)), "has a scheme", "HOST[:PORT]/NAMESPACE")  # fmt: skip
    one_line(invoke(*publish, closed, env=server.env(**named)), "does not answer", "connection refused")  # fmt: skip
    one_line(invoke(*publish, server.name, env={"DOCKER_CONFIG": str(nobody), **named}), f"not logged in to {server.address}", "docker login")  # fmt: skip
    one_line(invoke(*publish, server.name, env={"DOCKER_CONFIG": str(wrong), **named}), f"{server.address} refused the credentials")  # fmt: skip
    one_line(invoke(*publish, server.name, env=server.env(DLLAB_IMAGE_NAME="dllab-nothere")), "nothing to publish", "has no cpu-")  # fmt: skip
    lab = ("lab", "--variant", "cpu", "--work", str(tmp_path / "work"), "--no-browser")
    absent = lab_env(server, "dllab-nothere", tmp_path, DOCKER_CONFIG=str(wrong))
    one_line(invoke(*lab, env=absent), "refused the credentials", "--build")
    absent = lab_env(server, "dllab-nothere", tmp_path, DLLAB_REGISTRY=f"https://{server.name}")
    one_line(invoke(*lab, env=absent), "DLLAB_REGISTRY 'https://", "has a scheme")
    assert docker("image", "inspect", "dllab-nothere:cpu").returncode != 0  # nothing was built


# --- the cold start figure (BENCHMARKS.md), on demand --------------------------------------------


@pytest.fixture
def fresh_engine(tmp_path):
    """A second dockerd with a data root, socket and bridge of its own, so holding no layer of any
    image; stopped and its data removed afterwards. Only with DLLAB_COLD_START=1 (minutes)."""
    if not os.environ.get("DLLAB_COLD_START"):
        pytest.skip("the cold start figure takes minutes and a second engine: DLLAB_COLD_START=1")
    # DLLAB_COLD_ROOT: where its data root goes (default /var/tmp; about 9 GB at the build's peak).
    root = Path(tempfile.mkdtemp(prefix="dllab-cold-", dir=os.environ.get("DLLAB_COLD_ROOT", "/var/tmp")))  # fmt: skip
    bridge = f"dllabcold{os.getpid() % 10000}"
    ip = ["ip", "link"]
    subprocess.run([*ip, "add", bridge, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", "10.213.7.1/24", "dev", bridge], check=True)
    subprocess.run([*ip, "set", bridge, "up"], check=True)
    log = (root / "dockerd.log").open("w")
    daemon = subprocess.Popen(
        ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
         "--pidfile", str(root / "docker.pid"), "--host", f"unix://{root}/docker.sock",
         "--bridge", bridge, "--iptables=false", "--ip-masq=false", "--dns", "127.0.0.1",
         "--storage-driver", "overlay2"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    host = f"unix://{root}/docker.sock"
    try:
        deadline = time.monotonic() + 60
        while docker("info", env={"DOCKER_HOST": host}).returncode:
            assert time.monotonic() < deadline, (root / "dockerd.log").read_text()[-2000:]
            time.sleep(0.5)
        yield host
    finally:
        daemon.terminate()
        daemon.wait(timeout=120)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run([*ip, "delete", bridge])


def timed_lab(env: dict, work: Path) -> tuple[float, str]:
    """`invoke lab` from start to its URL answering: (seconds, its stderr)."""
    started = time.monotonic()
    lab = invoke("lab", "--variant", "cpu", "--work", str(work), "--no-browser", env=env)
    assert lab.returncode == 0, lab.stdout + lab.stderr
    url = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=([\w-]+)", lab.stdout)
    status = f"http://127.0.0.1:{url.group(1)}/api/status?token={url.group(2)}"
    assert urllib.request.urlopen(status, timeout=10).status == 200
    return time.monotonic() - started, lab.stderr


def test_cold_start_pull_from_the_registry_against_a_build_from_the_wheelhouse(server, published, fresh_engine, tmp_path):  # fmt: skip
    """From an engine holding no layer of the image to the lab's URL answering: pulled from the
    registry on this machine, then (the pulled image removed) built from the wheelhouse, whose
    base and wheels images are loaded first, untimed. Printed for BENCHMARKS.md."""
    env = lab_env(server, PULLED, tmp_path, DOCKER_HOST=fresh_engine)
    pulled, said = timed_lab(env, tmp_path / "pulled")
    assert "pulled" in said
    print(f"\ncold start to the lab's URL, pulled: {pulled:.0f} s", flush=True)
    invoke("lab", "--stop", "--variant", "cpu", env=env)
    local = renamed(PULLED, CPU.image)
    docker("rmi", local, env={"DOCKER_HOST": fresh_engine})
    assert docker("image", "ls", "--all", "--quiet", env={"DOCKER_HOST": fresh_engine}).stdout == ""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DLLAB_IMAGE_NAME", PULLED)
        wheels = containers.wheels_image(CPU, "linux-x86_64")
    saved = subprocess.Popen(["docker", "save", "debian:bookworm-slim", containers.wheels_image(CPU, "linux-x86_64")], stdout=subprocess.PIPE)  # fmt: skip
    loaded = subprocess.run(["docker", "load", "--quiet"], stdin=saved.stdout, capture_output=True, text=True, env={**os.environ, "DOCKER_HOST": fresh_engine})  # fmt: skip
    assert saved.wait() == 0 and loaded.returncode == 0, loaded.stderr
    docker("tag", containers.wheels_image(CPU, "linux-x86_64"), wheels, env={"DOCKER_HOST": fresh_engine})  # fmt: skip
    env = lab_env(server, PULLED, tmp_path, DOCKER_HOST=fresh_engine, DLLAB_REGISTRY="")
    built, said = timed_lab(env, tmp_path / "built")
    assert "building it now" in said and "offline" in said
    invoke("lab", "--stop", "--variant", "cpu", env=env)
    print(f"cold start to the lab's URL, built from the wheelhouse: {built:.0f} s", flush=True)
    assert pulled < built
