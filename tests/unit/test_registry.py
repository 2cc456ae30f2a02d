"""dllab.registry on paper: registry names, the lock-digest tag, what a registry's error means,
pull before build and publish against a scripted engine, and the cluster files pinned by digest."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil

import pytest
import yaml

from dllab import containers, images, locks, registry, variants
from dllab.errors import UserError
from dllab.runner import Done, Runner
from dllab.variants import ROOT

CPU = variants.get("cpu")
REGISTRY = "registry.example.org:5000/course"
DIGEST = {"linux-x86_64": "sha256:" + "a" * 64, "linux-aarch64": "sha256:" + "b" * 64}
SIZE = {"linux-x86_64": 900_000_000, "linux-aarch64": 800_000_000}


@pytest.fixture(autouse=True)
def setting(monkeypatch, tmp_path):
    """No registry unless a test sets one; private state in a temporary folder; x86_64 engine."""
    monkeypatch.delenv(registry.SETTING, raising=False)
    monkeypatch.setattr(registry, "PYPROJECT", tmp_path / "pyproject.toml")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    monkeypatch.setenv("DLLAB_STATE", str(tmp_path / "state"))
    monkeypatch.setattr(variants, "host_platform", lambda: "linux-x86_64")


class Finished:
    """What Popen gives back, for a command that has already ended."""

    def __init__(self, done: Done):
        self.done, self.returncode = done, done.code

    def communicate(self):
        return self.done.out, self.done.err


class Engine(Runner):
    """A Runner that answers each command from `answers` ((regex, Done or a function of the argv)
    pairs, first match wins; exit 0 otherwise) and records what ran."""

    def __init__(self, answers=()):
        super().__init__()
        self.answers, self.ran = list(answers), []

    def __call__(self, cmd, *, quiet=True, echo=False, env=None):
        self.ran.append(shlex.join(cmd))
        for pattern, done in self.answers:
            if re.search(pattern, shlex.join(cmd)):
                return done(cmd) if callable(done) else done
        return Done(0, "{}")

    def start(self, cmd, echo=False, **popen):
        """A long command (`docker push`), answered as a finished process."""
        done = self(cmd)
        return Finished(done)

    def matching(self, pattern: str) -> list[str]:
        return [cmd for cmd in self.ran if re.search(pattern, cmd)]


ENGINE_INFO = (r"^docker info", Done(0, json.dumps({"ServerVersion": "20.10.24"})))


def lock_labels(platform: str, **more) -> Done:
    return Done(0, json.dumps({registry.LOCK_LABEL: locks.file_digest(CPU, platform), **more}))


def ref() -> str:
    return f"{registry.repository(REGISTRY)}:{registry.tag(CPU)}"


# --- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ghcr.io/yourorg", "ghcr.io/yourorg"),
        ("registry.example.org:5000/course/2026/", "registry.example.org:5000/course/2026"),
        ("localhost:5000/dev", "localhost:5000/dev"),
        ("127.0.0.1:5000/a-b_c.d", "127.0.0.1:5000/a-b_c.d"),
        ("[::1]:5000/ns", "[::1]:5000/ns"),
        ("  docker.io/someone  ", "docker.io/someone"),
    ],
)
def test_a_registry_is_host_port_and_namespace(value, expected):
    """HOST[:PORT]/NAMESPACE as Docker reads it; a trailing slash or spaces do not matter."""
    assert registry.parse(value, "--registry") == expected


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("https://ghcr.io/yourorg", "has a scheme: write it as HOST[:PORT]/NAMESPACE"),
        ("http://localhost:5000/x", "has a scheme"),
        ("ghcr.io", "names no namespace"),
        ("yourorg/dllab", "does not start with a registry host"),
        ("ghcr.io/YourOrg", "a namespace is lowercase letters and digits"),
        ("ghcr.io/org/dllab:cpu", "no tag: dllab names the tags"),
        ("ghcr.io/org dllab", "a namespace is lowercase"),
        ("host.example:99999/ns", "has no valid port"),
        ("", "does not start with a registry host"),
    ],
)
def test_a_bad_registry_name_is_one_line_naming_where_it_came_from(value, words):
    """A scheme, no namespace, no host, capitals, a tag, a bad port: one line, naming the flag."""
    with pytest.raises(UserError) as error:
        registry.parse(value, "--registry")
    message = str(error.value)
    assert message.startswith(f"--registry {value!r}") and words in message
    assert "\n" not in message


def test_the_registry_comes_from_the_environment_else_pyproject(monkeypatch, tmp_path):
    """DLLAB_REGISTRY wins (empty: none); else [tool.dllab] registry; a bad one says where it is."""
    assert registry.configured() is None
    (tmp_path / "pyproject.toml").write_text('[tool.dllab]\nregistry = "ghcr.io/school"\n')
    assert registry.configured() == "ghcr.io/school"
    monkeypatch.setenv(registry.SETTING, "registry.example.org/course")
    assert registry.configured() == "registry.example.org/course"
    monkeypatch.setenv(registry.SETTING, "")
    assert registry.configured() is None
    monkeypatch.delenv(registry.SETTING)
    (tmp_path / "pyproject.toml").write_text('[tool.dllab]\nregistry = "https://ghcr.io/school"\n')
    with pytest.raises(
        UserError, match=r"^pyproject.toml's \[tool.dllab\] registry .* has a scheme"
    ):
        registry.configured()


def test_the_tag_is_the_sha256_of_every_linux_lock_of_the_variant(monkeypatch, tmp_path):
    """cpu-<12 hex>, computed from each lock file's sha256 (as sha256sum prints it) and platform;
    a change to either lock gives another tag."""
    shutil.copytree(variants.LOCKS, tmp_path / "locks")
    monkeypatch.setattr(variants, "LOCKS", tmp_path / "locks")
    sums = {p: hashlib.sha256(CPU.lock(p).read_bytes()).hexdigest() for p in CPU.platforms}
    text = "".join(f"{p} sha256:{sums[p]}\n" for p in ("linux-x86_64", "linux-aarch64"))
    expected = hashlib.sha256(text.encode()).hexdigest()[:12]
    assert registry.tag(CPU) == f"cpu-{expected}"
    for platform in CPU.platforms:
        before = registry.tag(CPU)
        with CPU.lock(platform).open("a") as lock:
            lock.write("# edited\n")
        assert registry.tag(CPU) != before
    assert re.fullmatch(r"cuda-[0-9a-f]{12}", registry.tag(variants.get("cuda")))


def test_the_repository_is_the_registry_and_the_images_name(monkeypatch):
    monkeypatch.setenv("DLLAB_IMAGE_NAME", "somewhere.example/team/dllab-test")
    assert registry.repository(REGISTRY) == f"{REGISTRY}/dllab-test"
    monkeypatch.delenv("DLLAB_IMAGE_NAME")
    assert registry.repository(REGISTRY) == f"{REGISTRY}/dllab"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("localhost:5000/x", True), ("127.0.0.1:5000/x", True), ("127.3.2.1/x", True),
     ("[::1]:5000/x", True), ("172.17.0.1:5000/x", False), ("ghcr.io/x", False),
     ("localhost.example.org/x", False)],
)  # fmt: skip
def test_loopback_registries_are_recognised(name, expected):
    assert registry.loopback(name) is expected


def test_docker_manifest_gets_insecure_for_loopback_registries_only():
    """--insecure (plain HTTP, as the engine allows on loopback) for a loopback registry only."""
    assert "--insecure" in containers.manifest_inspect_command("x", insecure=True)
    for cmd in (containers.manifest_inspect_command("x"), containers.manifest_create_command("x", ["y"]),
                containers.manifest_push_command("x")):  # fmt: skip
        assert "--insecure" not in cmd
    assert containers.pull_command("r/x:t") == ["docker", "pull", "--quiet", "r/x:t"]
    assert containers.pull_command("r/x:t", "linux-aarch64")[3:5] == ["--platform", "linux/arm64"]


# --- what a failure means ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("err", "kind", "words"),
    [
        ('Error response from daemon: Head "https://h:5000/v2/ns/dllab/manifests/cpu-1": no basic auth credentials',
         "login", "you are not logged in to registry.example.org:5000: run `docker login registry.example.org:5000`"),
        ("Error response from daemon: Head \"https://h/v2/x/manifests/t\": unauthorized: authentication required",
         "denied", "refused the credentials Docker has for it"),
        ("Error response from daemon: manifest for h/x:t not found: manifest unknown: manifest unknown",
         "missing", "has no"),
        ("no such manifest: h/x:t", "missing", "has no"),
        ("Error response from daemon: Get \"https://h/v2/\": dial tcp 127.0.0.1:1: connect: connection refused",
         "unreachable", "does not answer (Get"),
        ("Error response from daemon: Get \"https://h/v2/\": x509: certificate signed by unknown authority",
         "untrusted", "/etc/docker/certs.d/registry.example.org:5000/ca.crt"),
        ("Error response from daemon: Get \"https://h/v2/\": http: server gave HTTP response to HTTPS client",
         "http", "answers plain HTTP"),
        ("failed to put manifest h:5000/x:t: read tcp 127.0.0.1:1->127.0.0.1:5000: read: connection reset by peer",
         "loopback-push", "publish to its non-loopback address"),
        ("something else entirely", "other", "`docker push` of h/x:t failed: something else entirely"),
    ],
)  # fmt: skip
def test_each_registry_failure_is_one_actionable_line(err, kind, words):
    """Docker's own error texts (engine and CLI), read as what to do about them."""
    done = Done(1, err=err)
    assert registry.kind(done) == kind
    message = str(registry.failure(REGISTRY, done, "push", "h/x:t"))
    assert words in message and "\n" not in message


# --- pull before build ----------------------------------------------------------------------------


@pytest.fixture
def builds(monkeypatch):
    """images.build, recorded instead of run."""
    made = []
    monkeypatch.setattr(images, "build", lambda run, variant, platform, offline=False: made.append((variant.name, platform, offline)))  # fmt: skip
    return made


MISSING_HERE = (rf"^docker image inspect {re.escape(CPU.image)}$", Done(1, err="No such image"))


def test_a_missing_image_is_pulled_by_the_tag_of_the_locks_and_tagged_locally(
    monkeypatch, capsys, builds
):
    """No image here, a registry set: `docker pull` of REGISTRY/dllab:cpu-<locks>, its lock label
    checked, tagged as dllab:cpu, the registry's name untagged, its ID kept for `invoke clean`."""
    monkeypatch.setenv(registry.SETTING, REGISTRY)
    engine = Engine([MISSING_HERE, (r"Config.Labels", lock_labels("linux-x86_64", **{registry.REVISION_LABEL: "abc1234"})),
                     (r"\.Id", Done(0, "sha256:" + "1" * 64 + "\n"))])  # fmt: skip
    images.ensure(engine, CPU, "linux-x86_64")
    assert builds == []
    assert engine.matching("^docker pull") == [f"docker pull --quiet {ref()}"]
    assert engine.matching("^docker tag") == [f"docker tag {ref()} {CPU.image}"]
    assert engine.matching("^docker rmi") == [f"docker rmi {ref()}"]
    recorded = containers.image_ids_file(CPU, "linux-x86_64", "pulled")
    assert (
        recorded.read_text() == "sha256:" + "1" * 64 + "\n" and recorded.stat().st_mode & 0o077 == 0
    )
    err = capsys.readouterr().err
    assert f"pulling {ref()} (linux-x86_64)" in err and "pulled" in err and "abc1234" in err


def test_another_platform_is_pulled_for_that_platform(monkeypatch, builds):
    monkeypatch.setenv(registry.SETTING, REGISTRY)
    engine = Engine([(rf"^docker image inspect {re.escape(CPU.image)}-linux-aarch64$", Done(1)),
                     (r"Config.Labels", lock_labels("linux-aarch64"))])  # fmt: skip
    images.ensure(engine, CPU, "linux-aarch64")
    assert engine.matching("^docker pull") == [
        f"docker pull --quiet --platform linux/arm64 {ref()}"
    ]
    assert engine.matching("^docker tag") == [f"docker tag {ref()} {CPU.image}-linux-aarch64"]


@pytest.mark.parametrize(
    "err",
    ["Error response from daemon: manifest for x not found: manifest unknown: manifest unknown",
     "Error response from daemon: no matching manifest for linux/amd64 in the manifest list entries",
     'Error response from daemon: Get "https://x/v2/": dial tcp 10.0.0.1:5000: connect: connection refused'],
)  # fmt: skip
def test_a_tag_the_registry_lacks_or_no_answer_leads_to_a_build_that_says_so(
    monkeypatch, capsys, builds, err
):
    """The tag of these locks absent (another lock's only, or not this platform's), or the
    registry not answering: the image is built here, and the line says why."""
    monkeypatch.setenv(registry.SETTING, REGISTRY)
    engine = Engine([MISSING_HERE, (r"^docker pull", Done(1, err=err))])
    images.ensure(engine, CPU, "linux-x86_64")
    assert builds == [("cpu", "linux-x86_64", True)]
    assert engine.matching("^docker tag") == []
    lines = capsys.readouterr().err.splitlines()
    assert any(line.endswith(": building it here instead") for line in lines), lines


def test_a_refused_pull_is_one_line_and_builds_nothing(monkeypatch, builds):
    """Wrong or no credentials: a UserError naming `docker login` and --build; no build starts."""
    monkeypatch.setenv(registry.SETTING, REGISTRY)
    err = 'Error response from daemon: Head "https://x": unauthorized: authentication required'
    engine = Engine([MISSING_HERE, (r"^docker pull", Done(1, err=err))])
    with pytest.raises(UserError, match=r"refused the credentials .* \(or pass --build to build it here\)$"):  # fmt: skip
        images.ensure(engine, CPU, "linux-x86_64")
    assert builds == []


def test_a_pulled_image_of_another_lock_is_refused_and_removed(monkeypatch, builds):
    """The registry's tag holds an image whose lock label is not this checkout's lock: refused in
    one line; the pulled name removed, nothing tagged dllab:cpu, nothing built."""
    monkeypatch.setenv(registry.SETTING, REGISTRY)
    other = Done(0, json.dumps({registry.LOCK_LABEL: "sha256:" + "0" * 64}))
    engine = Engine([MISSING_HERE, (r"Config.Labels", other)])
    with pytest.raises(UserError) as error:
        images.ensure(engine, CPU, "linux-x86_64")
    assert str(error.value).startswith(f"{ref()} was installed from another lock than this checkout's cpu-linux-x86_64.txt")  # fmt: skip
    assert str(error.value).endswith(": refused")
    assert engine.matching("^docker tag") == [] and engine.matching("^docker rmi") == [f"docker rmi {ref()}"]  # fmt: skip
    assert builds == []


def test_build_here_never_pulls_and_no_registry_builds_as_before(monkeypatch, capsys, builds):
    """--build builds even where the image and a registry exist; with no registry set, a missing
    image is built on first use, as before."""
    monkeypatch.setenv(registry.SETTING, REGISTRY)
    engine = Engine()
    images.ensure(engine, CPU, "linux-x86_64", build_here=True)
    assert engine.matching("^docker pull") == [] and builds == [("cpu", "linux-x86_64", True)]
    assert "(--build;" in capsys.readouterr().err
    monkeypatch.delenv(registry.SETTING)
    engine = Engine([MISSING_HERE])
    images.ensure(engine, CPU, "linux-x86_64")
    assert engine.matching("^docker pull") == [] and len(builds) == 2


def test_an_image_here_is_used_as_it_is():
    engine = Engine()
    images.ensure(engine, CPU, "linux-x86_64")
    assert engine.ran == [f"docker image inspect {CPU.image}"]


# --- publish ----------------------------------------------------------------------------------------


def manifest(platform: str) -> Done:
    """`docker manifest inspect --verbose` of one platform's image, as docker 28 prints it."""
    arch = {"linux-x86_64": "amd64", "linux-aarch64": "arm64"}[platform]
    return Done(0, json.dumps({
        "Ref": "x", "Descriptor": {"digest": DIGEST[platform], "platform": {"architecture": arch, "os": "linux"}},
        "SchemaV2Manifest": {"config": {"size": 1000}, "layers": [{"size": SIZE[platform] - 1000}]},
    }))  # fmt: skip


def publish_engine(here=("linux-x86_64", "linux-aarch64"), there=("linux-x86_64", "linux-aarch64"), labels=None):  # fmt: skip
    """An engine holding the cpu images of `here`, and a registry holding those of `there`."""
    answers = [ENGINE_INFO]
    for platform in CPU.platforms:
        image = re.escape(containers.image_tag(CPU, platform))
        answers.append((rf"^docker image inspect {image}$", Done(0 if platform in here else 1)))
        answers.append((rf"Config.Labels.* {image}$", (labels or {}).get(platform) or lock_labels(platform)))  # fmt: skip
        answers.append((rf"^docker manifest inspect .*-{platform}$",
                        manifest(platform) if platform in there else Done(1, err="no such manifest: x")))  # fmt: skip
    answers.append((r"^docker manifest push", Done(0, "sha256:" + "c" * 64 + "\n")))
    return Engine(answers)


def test_publish_pushes_each_platform_then_one_index_by_digest(capsys, tmp_path):
    """Each platform's image goes as <tag>-<platform> (untagged here after), then the index
    <tag> and the moving `cpu`, of both images by digest; the compressed sizes and the digest
    to pin are said."""
    engine = publish_engine()
    registry.publish(engine, CPU, REGISTRY)
    repo, tag = registry.repository(REGISTRY), registry.tag(CPU)
    assert engine.matching("^docker push") == [f"docker push {repo}:{tag}-linux-x86_64", f"docker push {repo}:{tag}-linux-aarch64"]  # fmt: skip
    assert len(engine.matching("^docker rmi")) == 2
    creates = engine.matching("^docker manifest create")
    assert creates == [f"docker manifest create --amend {repo}:{name} {repo}@{DIGEST['linux-x86_64']} {repo}@{DIGEST['linux-aarch64']}" for name in (tag, "cpu")]  # fmt: skip
    assert engine.matching("^docker manifest push") == [f"docker manifest push --purge {repo}:{name}" for name in (tag, "cpu")]  # fmt: skip
    assert all("--insecure" not in cmd for cmd in engine.ran)
    err = capsys.readouterr().err
    assert "linux/amd64 0.90 GB, linux/arm64 0.80 GB (compressed)" in err
    assert f"by digest, for a cluster: {repo}:{tag}@sha256:{'c' * 64}" in err
    assert "dllab.venv-tree absent" in err


def test_publish_indexes_a_platform_another_machine_pushed():
    """An arm64 image pushed by a native arm64 runner joins the index of an amd64-only machine."""
    engine = publish_engine(here=("linux-x86_64",))
    registry.publish(engine, CPU, REGISTRY)
    assert len(engine.matching("^docker push")) == 1
    assert DIGEST["linux-aarch64"] in engine.matching("^docker manifest create")[0]


def test_publish_refuses_an_image_of_another_lock_before_pushing_anything():
    stale = {"linux-aarch64": Done(0, json.dumps({registry.LOCK_LABEL: "sha256:" + "0" * 64}))}
    engine = publish_engine(labels=stale)
    with pytest.raises(UserError, match=r"-linux-aarch64 was installed from another lock"):
        registry.publish(engine, CPU, REGISTRY)
    assert engine.matching("^docker (tag|push)") == []


def test_a_refused_push_is_one_line_and_every_registry_name_is_untagged():
    """Both pushes start; one refused: its line names `docker login`; no index is made."""
    engine = publish_engine()
    engine.answers.insert(0, (r"^docker push .*-linux-aarch64$", Done(1, err="unauthorized: authentication required")))  # fmt: skip
    with pytest.raises(UserError, match=r"refused the credentials Docker has for it \(unauthorized"):  # fmt: skip
        registry.publish(engine, CPU, REGISTRY)
    assert len(engine.matching("^docker push")) == 2 and len(engine.matching("^docker rmi")) == 2
    assert engine.matching("^docker manifest create") == []


def test_publish_with_nothing_here_or_there_says_so():
    engine = publish_engine(here=(), there=())
    with pytest.raises(UserError, match=r"^nothing to publish: no .*:cpu image here .* has no cpu-[0-9a-f]{12}-<platform> image either$"):  # fmt: skip
        registry.publish(engine, CPU, REGISTRY)
    assert engine.matching("^docker (push|manifest create)") == []


@pytest.mark.parametrize("bad", ["https://ghcr.io/x", "ghcr.io"])
def test_publish_checks_the_name_before_any_command(bad):
    engine = Engine()
    with pytest.raises(UserError, match=r"^--registry "):
        registry.publish(engine, CPU, bad)
    assert engine.ran == []


def test_publish_to_a_loopback_registry_lets_docker_manifest_speak_http():
    engine = publish_engine()
    registry.publish(engine, CPU, "localhost:5000/dev")
    assert all("--insecure" in cmd for cmd in engine.matching("^docker manifest"))


def test_a_metal_publish_is_refused():
    with pytest.raises(UserError, match="metal is native only"):
        registry.publish(Engine(), variants.get("metal"), REGISTRY)


# --- the cluster's files ---------------------------------------------------------------------------


def test_pin_writes_the_digest_into_the_marked_deploy_lines_only(tmp_path):
    """--deploy: every `# dllab-image: cpu` line of deploy/ gets the reference (z2jh's
    singleuser.image as name and tag); cuda's lines and everything else stay as they were."""
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    reference = f"{REGISTRY}/dllab:cpu-0123456789ab@sha256:{'d' * 64}"
    written = registry.pin(CPU, reference, root=tmp_path)
    names = sorted(p.name for p in written)
    assert names == ["tensorflow-cpu.yaml", "torch-cpu.yaml", "values.yaml"]
    values = yaml.safe_load((tmp_path / "deploy/z2jh/values.yaml").read_text())
    image = values["singleuser"]["image"]
    assert f"{image['name']}:{image['tag']}" == reference
    profiles = {p["slug"]: p["kubespawner_override"]["image"] for p in values["singleuser"]["profileList"]}  # fmt: skip
    assert profiles["cpu"] == reference and profiles["cuda"].startswith("registry.example.org/course/dllab:cuda@")  # fmt: skip
    torch = yaml.safe_load((tmp_path / "deploy/k8s/torch-cpu.yaml").read_text())
    assert torch["spec"]["trainer"]["image"] == reference
    for name in ("torch-cuda.yaml", "tensorflow-cuda.yaml"):
        assert (tmp_path / "deploy/k8s" / name).read_text() == (
            ROOT / "deploy/k8s" / name
        ).read_text()
    before = (ROOT / "deploy/k8s/torch-cpu.yaml").read_text().splitlines()
    after = (tmp_path / "deploy/k8s/torch-cpu.yaml").read_text().splitlines()
    assert [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b] == [
        i for i, line in enumerate(before) if registry.MARK in line
    ]


# --- the tasks ---------------------------------------------------------------------------------------


def test_invoke_publish_with_a_scheme_is_one_line_and_exit_2():
    """`invoke publish --registry https://...`: `dllab: ...` and exit 2, no docker command run."""
    from invoke import Exit, MockContext

    import tasks

    c = MockContext(run={}, repeat=True)
    with pytest.raises(Exit) as ended:
        tasks.publish(c, registry="https://ghcr.io/yourorg")
    assert ended.value.code == 2 and str(ended.value.message).startswith(
        "dllab: --registry 'https://"
    )
    assert c.run.call_args_list == []


def test_invoke_lab_build_builds_before_it_starts_and_never_pulls(monkeypatch, tmp_path):
    """`invoke lab --build`, a registry set and the image here: a docker build, then the lab."""
    from invoke import MockContext, Result

    import tasks
    from dllab import lab

    monkeypatch.setenv(registry.SETTING, REGISTRY)
    monkeypatch.setattr(lab.time, "sleep", lambda s: None)
    c = MockContext(
        run={re.compile("docker info .*"): Result(stdout=ENGINE_INFO[1].out),
             re.compile("docker container inspect.*"): Result(exited=1),
             re.compile(r"docker run .*venv-tree\.sha256"): Result(stdout="sha256:" + "0" * 64),
             re.compile(".*"): Result(stdout="ok")},
        repeat=True,
    )  # fmt: skip
    tasks.lab(c, variant="cpu", work=str(tmp_path / "work"), no_browser=True, build=True)
    ran = [call.args[0] for call in c.run.call_args_list]
    builds = [i for i, cmd in enumerate(ran) if cmd.startswith("docker build") and "label.Dockerfile" not in cmd]  # fmt: skip
    starts = [i for i, cmd in enumerate(ran) if cmd.startswith("docker run --detach")]
    assert len(builds) == 1 and len(starts) == 1 and builds[0] < starts[0]
    assert not any(cmd.startswith("docker pull") for cmd in ran)


def test_invoke_dry_publish_shows_the_pushes_and_runs_nothing(capsys):
    """`invoke --dry publish`: each tag and push printed, nothing run, nothing refused."""
    from invoke import Config, Context

    import tasks

    c = Context(Config(overrides={"run": {"dry": True, "echo": True}}))
    tasks.publish(c, registry=REGISTRY)
    out = capsys.readouterr().out
    repo, tag = registry.repository(REGISTRY), registry.tag(CPU)
    assert f"docker push {repo}:{tag}-linux-x86_64" in out and f"docker push {repo}:{tag}-linux-aarch64" in out  # fmt: skip
