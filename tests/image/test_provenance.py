"""Proof on a real engine: two clean builds of a small venv give one tree hash; `invoke verify`
finds a changed file; the SBOM is what pip and dpkg list, with the lock's hashes; a signed bundle
is refused whole when damaged, signed by another key, cut short or for another platform, and
loads when it is not.

The small venv goes through the code path of `invoke build --offline` (the project's Dockerfile,
containers.build_command, then the label step), with a lock of a few of the cpu lock's packages,
whose wheels the cpu wheelhouse already holds; the full-size builds are measured in BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest

from dllab import bundle, containers, locks, provenance, variants
from dllab.runner import Runner
from tests.support import missing

CPU = variants.get("cpu")
LABEL = containers.label_template(provenance.LABEL)  # (a test's `containers` is its fixture)
TINY = ("markupsafe", "packaging", "pyyaml", "setuptools", "six", "wheel")  # C and pure Python
CONTEXT = (
    "docker",
    "src",
    "labs",
    "tests",
    "locks",
    "pyproject.toml",
    "README.md",
    ".dockerignore",
)


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def dllab(module: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    """`python -m dllab.<module> ARGS` in a process of its own, as invoke's tasks run it."""
    return subprocess.run([sys.executable, "-m", f"dllab.{module}", *args], capture_output=True,
                          text=True, env={**os.environ, **env})  # fmt: skip


def tiny_lock(text: str) -> str:
    """The blocks of the cpu lock (pin, hashes, comments) that pin TINY's packages."""
    blocks = re.split(r"\n(?=[a-z0-9])", text.split(locks.AS_OF_PREFIX)[0])
    return "\n".join(b for b in blocks if b.split("==")[0] in TINY) + "\n"


def images() -> set[str]:
    return set(docker(*containers.all_images_command()[1:]).stdout.split())


@pytest.fixture(scope="module")
def tiny(client, tmp_path_factory):
    """The cpu image with a venv of a few packages, built twice with --no-cache as `invoke build
    --offline` builds it, then labelled: (its environment, the two tree hashes, its manifest)."""
    platform = variants.engine_platform()
    wheels = containers.wheels_image(CPU, platform)
    if not containers.image_exists(wheels):
        missing("image-cpu", f"no {wheels}: run `invoke wheelhouse --variant cpu`")
    root = tmp_path_factory.mktemp("tiny")
    context = root / "context"
    context.mkdir()
    for name in CONTEXT:
        source = variants.ROOT / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, context / name)
    (context / "locks" / f"cpu-{platform}.txt").write_text(
        tiny_lock(CPU.lock(platform).read_text())
    )
    env = {"DLLAB_IMAGE_NAME": f"{variants.image_name()}-tiny", "DLLAB_STATE": str(root / "state")}
    tag = f"{env['DLLAB_IMAGE_NAME']}:cpu"
    made, hashes = [], []
    try:
        # The environment of `invoke build` for these two builds only: a session-wide fixture
        # (cpu_image) must never see this image name.
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            alias = containers.wheels_image(CPU, platform)
            docker("tag", wheels, alias)  # the cpu wheelhouse, under this image name's
            containers.image_ids_file(CPU, platform, "tiny").parent.mkdir(parents=True)
            for _ in range(2):
                cmd = containers.build_command(
                    CPU, platform, "tiny", offline=True, dockerfile=context / "docker" / "Dockerfile",
                    context=context, tags=(tag,),
                )  # fmt: skip
                subprocess.run([*cmd[:-1], "--no-cache", "--quiet", cmd[-1]], check=True,
                               stdout=subprocess.DEVNULL)  # fmt: skip
                made.append(image_id(tag))
                provenance.label(Runner(), CPU, platform, "tiny")
                made.append(image_id(tag))
                hashes.append(provenance.read(Runner(), tag, provenance.TREE_HASH).strip())
        yield env, hashes, provenance.read(Runner(), tag, provenance.MANIFEST)
    finally:
        for name in (f"{tag}-tiny", tag, f"{env['DLLAB_IMAGE_NAME']}-wheels:cpu-{platform}"):
            docker("rmi", name, check=False)
        for image in reversed(made):
            docker("rmi", "--force", image, check=False)


def image_id(image: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", image, check=False).stdout.strip()


def test_two_clean_builds_give_the_same_venv_tree_hash(tiny):
    """--no-cache twice, through the same code path: one hash; the manifest covers bytecode (the
    usual source of difference) and a C extension; the label holds the hash."""
    env, hashes, manifest = tiny
    assert hashes[0] == hashes[1] and provenance.HASH_FORMAT.fullmatch(hashes[0])
    assert "/six.cpython-311.pyc" in manifest and "site-packages/yaml/_yaml.cpython-311" in manifest
    image = f"{env['DLLAB_IMAGE_NAME']}:cpu"
    assert docker("image", "inspect", "--format", LABEL, image).stdout.strip() == hashes[0]


def test_verify_passes_then_names_the_first_path_changed_after_the_build(tiny, tmp_path):
    """`verify` recomputes the tree in the image: 0 as built; for an image built FROM it with one
    line added to a file of its venv (labels and records inherited): exit 2, one line naming it."""
    env, _, _ = tiny
    ok = dllab("provenance", "verify", "--variant", "cpu", env=env)
    assert ok.returncode == 0 and "is what its build recorded" in ok.stdout, ok.stderr
    (tmp_path / "Dockerfile").write_text(
        f"FROM {env['DLLAB_IMAGE_NAME']}:cpu\nUSER root\n"
        "RUN echo >> /opt/venv/lib/python3.11/site-packages/six.py\n"
    )
    changed = {**env, "DLLAB_IMAGE_NAME": f"{env['DLLAB_IMAGE_NAME']}-changed"}
    docker("build", "--quiet", "--network", "none", "--tag", f"{changed['DLLAB_IMAGE_NAME']}:cpu",
           str(tmp_path))  # fmt: skip
    try:
        bad = dllab("provenance", "verify", "--variant", "cpu", env=changed)
    finally:
        docker("rmi", f"{changed['DLLAB_IMAGE_NAME']}:cpu", check=False)
    assert bad.returncode == 2
    assert bad.stderr == (
        f"dllab: {changed['DLLAB_IMAGE_NAME']}:cpu: /opt/venv is not what its build recorded: "
        "first at /opt/venv/lib/python3.11/site-packages/six.py (changed)\n"
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two ed25519 keys without a passphrase: the teacher's and a stranger's (private, public)."""
    folder = tmp_path_factory.mktemp("keys")
    pairs = {}
    for name in ("teacher", "stranger"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f",
                        str(folder / name)], check=True)  # fmt: skip
        pairs[name] = (folder / name, folder / f"{name}.pub")
    return pairs


@pytest.fixture(scope="module")
def made(tiny, keys, tmp_path_factory):
    """The small image's bundle, by `invoke bundle`'s module; then the image leaves the engine,
    so that a load that is refused can be seen to have loaded nothing."""
    env = tiny[0]
    out = tmp_path_factory.mktemp("bundle") / "class.dllab"
    result = dllab("bundle", "make", "--variant", "cpu", "--out", str(out), "--key",
                   str(keys["teacher"][0]), env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "dllab: saving" in result.stderr and "(100%)" in result.stderr  # progress
    image = f"{env['DLLAB_IMAGE_NAME']}:cpu"
    built = image_id(image)
    for tag in (image, f"{image}-tiny"):
        docker("rmi", tag)
    assert not image_id(image)
    return out, built, result.stdout


def refused(path, trust, env, why: str) -> None:
    """`invoke load`'s module refuses `path`: exit 2, one line saying `why`, no image added."""
    before = images()
    result = dllab("bundle", "load", str(path), "--trust", str(trust), env=env)
    lines = [
        line for line in result.stderr.splitlines() if not re.match(r"dllab: \w+ .*%\)$", line)
    ]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and why in lines[0] and lines[0].endswith("nothing loaded"), lines
    assert images() == before


def test_a_bundle_with_one_byte_changed_is_refused_and_nothing_loaded(made, keys, tiny, tmp_path):
    """In the image, the manifest, the signature, a header and the end: each refused."""
    path, _, _ = made
    data = bytearray(path.read_bytes())
    damaged = tmp_path / "damaged.dllab"
    image_start = data.index(b"image.tar.gz\0") + bundle.BLOCK
    for offset in (
        image_start + 4096,
        200,
        1024 + 600,
        image_start - bundle.BLOCK + 130,
        len(data) - 1,
    ):
        data[offset] ^= 0x01
        damaged.write_bytes(data)
        data[offset] ^= 0x01
        refused(damaged, keys["teacher"][1], tiny[0], "")


def test_a_bundle_signed_by_another_key_is_refused(made, keys, tiny):
    """Trusting a stranger's key: refused before the image is read."""
    refused(made[0], keys["stranger"][1], tiny[0], "is not signed by a key in")


def test_a_truncated_bundle_is_refused(made, keys, tiny, tmp_path):
    """Cut a byte short of its end: refused."""
    cut = tmp_path / "cut.dllab"
    cut.write_bytes(made[0].read_bytes()[:-1])
    refused(cut, keys["teacher"][1], tiny[0], "is truncated")


def test_a_bundle_for_another_platform_is_refused(made, keys, tiny, tmp_path):
    """Signed by the teacher, whole, but its manifest says linux-aarch64 (or x86_64, on arm64)."""
    work = tmp_path / "work"
    with tarfile.open(made[0]) as tar:
        tar.extractall(work, filter="data")
    manifest = json.loads((work / bundle.MANIFEST).read_text())
    other = "linux-aarch64" if manifest["platform"] != "linux-aarch64" else "linux-x86_64"
    about = {k: v for k, v in manifest.items() if k not in ("format", "files")}
    names = [f["name"] for f in manifest["files"]]
    for name in (bundle.MANIFEST, bundle.SIGNATURE):
        (work / name).unlink()
    bundle.seal(
        Runner(),
        work,
        names,
        {**about, "platform": other},
        keys["teacher"][0],
        tmp_path / "o.dllab",
    )
    refused(tmp_path / "o.dllab", keys["teacher"][1], tiny[0], f"is for {other}")


def test_a_good_bundle_loads_the_image_it_names(made, keys, tiny):
    """Last, after every refusal: it loads, with the image ID and label its manifest signed, and
    the loaded image's venv verifies."""
    path, built, _ = made
    env = tiny[0]
    result = dllab("bundle", "load", str(path), "--trust", str(keys["teacher"][1]), env=env)
    assert result.returncode == 0, result.stderr
    assert "dllab: checking class.dllab" in result.stderr and "dllab: loading" in result.stderr
    assert result.stdout.startswith(f"dllab: loaded {env['DLLAB_IMAGE_NAME']}:cpu (cpu, ")
    assert "signed by bundle-signer" in result.stdout
    assert image_id(f"{env['DLLAB_IMAGE_NAME']}:cpu") == built
    assert dllab("provenance", "verify", "--variant", "cpu", env=env).returncode == 0


def test_the_sbom_lists_what_pip_and_dpkg_list_with_the_locks_hashes(containers, cpu_image):
    """`invoke sbom`: CycloneDX 1.6; its PyPI components are pip's own listing in the image, each
    with the sha256 of the wheel installed, one of the lock's for that pin (but pip, which
    python3 -m venv installs; dllab itself is the SBOM's subject); its Debian ones, dpkg's."""
    out = dllab("provenance", "sbom", "--variant", "cpu", env={})
    assert out.returncode == 0, out.stderr
    sbom = json.loads(out.stdout)
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.6"
    properties = {p["name"]: p["value"] for p in sbom["metadata"]["properties"]}
    label = docker("image", "inspect", "--format", LABEL, cpu_image).stdout.strip()
    assert properties["dllab:variant"] == "cpu" and properties["dllab:venv-tree"] == label
    pypi = {
        locks.canonical(c["name"]): c
        for c in sbom["components"]
        if c["purl"].startswith("pkg:pypi/")
    }
    deb = {c["name"]: c for c in sbom["components"] if c["purl"].startswith("pkg:deb/")}
    root = sbom["metadata"]["component"]  # dllab itself, from its pyproject.toml
    code, listed = containers.output(cpu_image, ["pip", "list", "--format", "json"])
    assert code == 0
    pip = {
        locks.canonical(p["name"]): p["version"] for p in json.loads(listed[listed.index("[") :])
    }
    assert {name: c["version"] for name, c in pypi.items()} | {root["name"]: root["version"]} == pip
    code, text = containers.output(cpu_image, ["cat", "/opt/venv/dllab-lock.txt"])
    hashes = lock_hashes(text)
    assert set(pypi) - set(hashes) == {"pip"}  # python3 -m venv's, from Debian's python3-pip-whl
    for name, component in pypi.items():
        found = {h["content"] for h in component.get("hashes", []) if h["alg"] == "SHA-256"}
        if name == "pip":
            assert not found
        else:
            assert len(found) == 1 and found <= hashes[name], name
    query = [
        "dpkg-query",
        "-W",
        "-f",
        "${db:Status-Abbrev} ${Package} ${Version} ${Architecture}\n",
    ]
    code, dpkg = containers.output(cpu_image, query)
    installed = {f[1]: (f[2], f[3]) for f in map(str.split, dpkg.splitlines()) if f[0] == "ii"}
    assert code == 0 and installed
    assert {
        n: (c["version"], re.search(r"arch=(\w+)", c["purl"])[1]) for n, c in deb.items()
    } == installed


def lock_hashes(text: str) -> dict[str, set[str]]:
    """Package -> every sha256 the lock allows for its pin."""
    found: dict[str, set[str]] = {}
    name = ""
    for line in text.splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name = locks.canonical(line.split("==")[0])
        for digest in re.findall(r"--hash=sha256:([0-9a-f]{64})", line):
            found.setdefault(name, set()).add(digest)
    return found


def test_verify_passes_on_the_cpu_image(cpu_image):
    """The full cpu image, as CI built it: its venv is what its build recorded and labelled."""
    out = dllab("provenance", "verify", "--variant", "cpu", env={})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"dllab: {cpu_image}: /opt/venv is what its build recorded")
