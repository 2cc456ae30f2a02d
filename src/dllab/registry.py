"""Images a class can pull: `invoke publish` pushes dllab:<variant> to a registry as one index of
every platform built, tagged by the variant's locks; `images.ensure` pulls the tag of this
checkout's locks before it would build (`pull`).

The tag is the lock digest: `cpu-<12 hex>` names the sha256 of each of the variant's Linux lock
files, so a checkout asks only for an image installed from its very pins, and refuses one whose
label dllab.lock-file says otherwise. `cpu` moves to the newest publish. Credentials are Docker's
own (`docker login`, its credential store): no password ever passes through dllab.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

from dllab import containers, locks, private, provenance, variants
from dllab.errors import UserError, say
from dllab.runner import Done, Runner
from dllab.variants import ROOT, Variant

SETTING = "DLLAB_REGISTRY"
PYPROJECT = ROOT / "pyproject.toml"
EXAMPLE = "ghcr.io/yourorg"
LOCK_LABEL = "dllab.lock-file"  # the sha256 of the lock file the venv was installed from
REVISION_LABEL = "org.opencontainers.image.revision"
# A registry host as Docker reads one: a DNS name or an IPv4 address, or [IPv6], and a port.
HOST = re.compile(
    r"(?:\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::(?P<port>[0-9]{1,5}))?"
)
COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")  # a path component, as Docker's


# --- names ---------------------------------------------------------------------------------------


def parse(value: str, where: str) -> str:
    """`value` as HOST[:PORT]/NAMESPACE, or a UserError in one line naming `where` it came from."""
    text = str(value).strip().rstrip("/")
    form = f"write it as HOST[:PORT]/NAMESPACE, e.g. {EXAMPLE}"
    if "://" in text:
        raise UserError(f"{where} {value!r} has a scheme: {form} (Docker picks https itself)")
    host, _, path = text.partition("/")
    found = HOST.fullmatch(host)
    # Docker reads the first part as a host only if it has a dot or a port, or is localhost.
    if not found or not ("." in host or ":" in host or host == "localhost"):
        raise UserError(f"{where} {value!r} does not start with a registry host: {form} (docker.io/NAME for Docker Hub)")  # fmt: skip
    if found.group("port") and not 0 < int(found.group("port")) < 65536:
        raise UserError(f"{where} {value!r} has no valid port: {form}")
    if not path:
        raise UserError(f"{where} {value!r} names no namespace: {form}")
    if not all(COMPONENT.fullmatch(part) for part in path.split("/")):
        raise UserError(
            f"{where} {value!r}: a namespace is lowercase letters and digits, with '.', '_' or "
            "'-' between them (no tag: dllab names the tags)"
        )
    return f"{host}/{path}"


def configured() -> str | None:
    """The registry to pull from: DLLAB_REGISTRY (set but empty: none), else pyproject.toml's
    `[tool.dllab] registry`, else none."""
    if SETTING in os.environ:
        value = os.environ[SETTING]
        return parse(value, SETTING) if value.strip() else None
    try:
        setting = tomllib.loads(PYPROJECT.read_text()).get("tool", {}).get("dllab", {})
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"pyproject.toml is not valid TOML ({exc}): fix it") from None
    value = setting.get("registry")
    if value is None or value == "":
        return None
    return parse(value, "pyproject.toml's [tool.dllab] registry")


def docker_platforms(variant: Variant) -> list[str]:
    return [p for p in variant.platforms if variants.PLATFORMS[p].docker]


def locks_digest(variant: Variant) -> str:
    """The sha256 of the variant's Linux lock files, each by its own sha256 and platform."""
    lines = "".join(f"{p} {locks.file_digest(variant, p)}\n" for p in docker_platforms(variant))
    return locks.content_digest(lines)


def tag(variant: Variant) -> str:
    """cpu-<the first 12 hex digits of the lock digest>: the tag of this checkout's locks."""
    return f"{variant.name}-{locks_digest(variant).removeprefix('sha256:')[:12]}"


def repository(registry: str) -> str:
    """REGISTRY/dllab (the last part of DLLAB_IMAGE_NAME, if set)."""
    return f"{registry}/{variants.image_name().rsplit('/', 1)[-1]}"


def host(registry: str) -> str:
    return registry.split("/", 1)[0]


def loopback(registry: str) -> bool:
    """Whether the registry is on this machine's loopback (Docker lets those speak plain HTTP)."""
    name = host(registry)
    name = name[1:].split("]")[0] if name.startswith("[") else name.rsplit(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# --- what a registry's or engine's answer means ---------------------------------------------------

MISSING = ("manifest unknown", "no such manifest", "name unknown", "not found", "no matching manifest")  # fmt: skip
NO_LOGIN = ("no basic auth credentials",)
DENIED = ("unauthorized", "authentication required", "denied", "incorrect username or password")
UNTRUSTED = ("x509", "certificate")
UNREACHABLE = (
    "connection refused", "no such host", "i/o timeout", "network is unreachable",
    "no route to host", "name resolution", "dial tcp", "timeout",
)  # fmt: skip


def kind(done: Done) -> str:
    """missing, login, denied, untrusted, http, unreachable or other: what a failed docker
    command against a registry ran into."""
    text = f"{done.err} {done.out}".lower()
    for name, words in (("login", NO_LOGIN), ("denied", DENIED), ("untrusted", UNTRUSTED),
                        ("missing", MISSING)):  # fmt: skip
        if any(word in text for word in words):
            return name
    if "http response to https client" in text:
        return "http"
    if "http request to an https server" in text or (
        "connection reset" in text and "manifest" in text
    ):
        return "loopback-push"
    return "unreachable" if any(word in text for word in UNREACHABLE) else "other"


def failure(registry: str, done: Done, verb: str, ref: str) -> UserError:
    """The one line for a registry that refused or failed `verb` (push, pull, ...) of `ref`."""
    where, detail = host(registry), done.last_line().removeprefix("Error response from daemon: ")
    messages = {
        "login": f"you are not logged in to {where}: run `docker login {where}` (dllab uses "
        "Docker's own credentials, never a password of its own)",
        "denied": f"{where} refused the credentials Docker has for it ({detail}): run `docker "
        f"login {where}` with an account allowed to {verb.split()[-1]} there",
        "untrusted": f"{where}'s TLS certificate is not trusted here ({detail}): put its CA "
        f"certificate in /etc/docker/certs.d/{where}/ca.crt (the engine and `docker manifest` "
        "read it there)",
        "http": f"{where} answers plain HTTP, not HTTPS: serve it with TLS (or list it in the "
        "engine's insecure-registries)",
        "loopback-push": "`docker manifest push` sends plain HTTP to a registry on a loopback "
        f"address, and {where} speaks TLS (docker/cli treats loopback registries as insecure): "
        "publish to its non-loopback address or name instead",
        "unreachable": f"the registry {where} does not answer ({detail}): check its name and "
        "your network",
        "missing": f"{where} has no {ref}",
    }
    return UserError(messages.get(kind(done), f"`docker {verb}` of {ref} failed: {detail}"))


# --- labels ----------------------------------------------------------------------------------------


def labels(run: Runner, image: str) -> dict[str, str]:
    done = run(containers.image_inspect_command(image, "{{json .Config.Labels}}"))
    return (json.loads(done.out or "null") or {}) if done.ok else {}


def check_lock(found: dict[str, str], variant: Variant, platform: str, image: str) -> None:
    """A UserError unless `image`'s label says it was installed from this checkout's lock."""
    lock, expected = variant.lock(platform), locks.file_digest(variant, platform)
    label = found.get(LOCK_LABEL)
    if label != expected:
        raise UserError(
            f"{image} was installed from another lock than this checkout's {lock.name} (its "
            f"{LOCK_LABEL} is {label or 'missing'}, the lock's sha256 is {expected}): refused"
        )


# --- pull before build (images.ensure) ---------------------------------------------------------------


def pull(run: Runner, variant: Variant, platform: str) -> bool:
    """Pull the image of this checkout's locks for `platform` from the configured registry and
    tag it as the local image; False (said) where there is no registry, no such image or no
    answer, so the caller builds instead. A refusal or an image of another lock: a UserError."""
    registry = configured()
    if registry is None:
        return False
    image, ref = containers.image_tag(variant, platform), f"{repository(registry)}:{tag(variant)}"
    say(f"no {image} image yet: pulling {ref} ({platform}), the image of this checkout's locks")
    done = run(containers.pull_command(ref, platform), echo=True)
    if not done.ok:
        why = failure(registry, done, "pull", f"{ref} ({platform})")
        if kind(done) in ("missing", "unreachable"):
            say(f"{why}: building it here instead")
            return False
        raise UserError(f"{why} (or pass --build to build it here)")
    if run.dry:
        return True
    found = labels(run, ref)
    try:
        check_lock(found, variant, platform, ref)
        run.checked(containers.tag_command(ref, image))
    finally:  # the registry's name goes (a refused image with it)
        run(containers.remove_image_command(ref))
    image_id = run(containers.image_inspect_command(image, "{{.Id}}")).out.strip()
    # `invoke clean` removes an image this checkout pulled as one it built.
    private.folder(containers.state_dir() / "images")
    private.write(containers.image_ids_file(variant, platform, "pulled"), image_id + "\n")
    say(f"pulled {image} ({image_id[:19]}, revision {found.get(REVISION_LABEL, '?')}) from {ref}, "
        "instead of building it")  # fmt: skip
    return True


# --- publish ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pushed:
    """One platform's image in the registry: its manifest's digest and compressed size."""

    platform: str
    digest: str
    size: int


def remote(run: Runner, registry: str, ref: str, platform: str) -> Pushed | None:
    """The image `ref` in the registry (pushed now, or earlier from another machine), or None."""
    done = run(containers.manifest_inspect_command(ref, loopback(registry)))
    if not done.ok:
        if kind(done) == "missing":
            return None
        raise failure(registry, done, "read", ref)
    found = json.loads(done.out)
    manifest = found.get("SchemaV2Manifest") or found.get("OCIManifest") or {}
    parts = [manifest.get("config", {}), *manifest.get("layers", [])]
    return Pushed(platform, found["Descriptor"]["digest"], sum(p.get("size", 0) for p in parts))


def push(run: Runner, registry: str, pushes: dict[str, str]) -> None:
    """Push each image (`pushes`: target -> image) as its target, all at once: each engine push
    compresses its layers on a core of its own. The registry's names are untagged here after."""
    for target, image in pushes.items():
        run.checked(containers.tag_command(image, target))
        say(f"pushing {image} as {target} (layers the registry has are skipped)")
    try:
        started = {target: run.start(containers.push_command(target), echo=True, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                   for target in pushes}  # fmt: skip
        ended = {t: (p.communicate(), p.returncode) for t, p in started.items() if p is not None}
        for target, ((out, err), code) in ended.items():
            if code:
                raise failure(registry, Done(code, out, err), "push", target)
    finally:
        for target in pushes:
            run(containers.remove_image_command(target))


def index(run: Runner, registry: str, name: str, pushed: list[Pushed]) -> str:
    """Create and push the index `name` of the `pushed` images (by digest); its digest."""
    repo, insecure = name.rsplit(":", 1)[0], loopback(registry)
    manifests = [f"{repo}@{p.digest}" for p in pushed]
    for cmd in (containers.manifest_create_command(name, manifests, insecure),
                containers.manifest_push_command(name, insecure)):  # fmt: skip
        done = run(cmd, echo=True)
        if not done.ok:
            raise failure(registry, done, f"manifest {cmd[2]}", name)
    return done.out.strip().splitlines()[-1] if done.out.strip() else ""


def publish(run: Runner, variant: Variant, value: str, deploy: bool = False) -> None:
    """Push each platform's image built here as REGISTRY/dllab:<tag>-<platform>, then the index
    <tag> (and <variant>) of every platform the registry has for these locks."""
    registry = parse(value, "--registry")
    if not variant.dockerized:
        raise UserError(f"{variant.name} is native only: there is no image to publish")
    for platform in docker_platforms(variant):
        if problem := locks.stale(variant, platform):
            raise UserError(problem)
    containers.check_engine(run)
    repo, name = repository(registry), tag(variant)
    pushes, notes = {}, []
    for platform in docker_platforms(variant):
        image = containers.image_tag(variant, platform)
        if containers.image_exists(image, run):  # each checked before anything is pushed
            found = labels(run, image)
            if not run.dry:  # a dry run reads no labels
                check_lock(found, variant, platform, image)
            notes.append(f"{image}: revision {found.get(REVISION_LABEL, '?')}, "
                         f"{provenance.LABEL} {found.get(provenance.LABEL) or 'absent'}")  # fmt: skip
            pushes[f"{repo}:{name}-{platform}"] = image
    push(run, registry, pushes)
    if run.dry:  # nothing was pushed: there is no registry's answer to read
        return
    # Each platform the registry has for these locks: pushed now, or from another machine.
    found_there = (remote(run, registry, f"{repo}:{name}-{p}", p) for p in docker_platforms(variant))  # fmt: skip
    pushed = [there for there in found_there if there]
    if not pushed:
        raise UserError(
            f"nothing to publish: no {variant.image} image here (`invoke build --variant "
            f"{variant.name}`), and {registry} has no {name}-<platform> image either"
        )
    digest = index(run, registry, f"{repo}:{name}", pushed)
    index(run, registry, f"{repo}:{variant.name}", pushed)  # the moving tag: the same index
    for line in notes:
        say(line)
    platforms = ", ".join(f"{variants.PLATFORMS[p.platform].docker} {p.size / 1e9:.2f} GB" for p in pushed)  # fmt: skip
    say(f"published {repo}:{name} and :{variant.name}, an index of {platforms} (compressed)")
    pinned = f"{repo}:{name}@{digest}"
    say(f"by digest, for a cluster: {pinned}")
    if deploy:
        for path in pin(variant, pinned):
            say(f"wrote it into {path.relative_to(ROOT)}")


# --- the cluster's files (deploy/) take the image by digest ---------------------------------------

MARK = "# dllab-image: "  # ends each deploy/ line that holds an image, naming its variant


def pin(variant: Variant, reference: str, root: Path = ROOT) -> list[Path]:
    """Write `reference` (name:tag@sha256:...) into every deploy/ line marked as `variant`'s
    image; the files changed."""
    name, tagged = reference.split("@", 1)[0].rsplit(":", 1)[0], reference.split("/")[-1]
    written = []
    for path in sorted((root / "deploy").rglob("*.yaml")):
        lines = path.read_text().splitlines(keepends=True)
        for i, line in enumerate(lines):
            head, mark, rest = line.partition(MARK)
            if not mark or rest.split()[0] != variant.name:
                continue
            key = head.split(":", 1)[0]
            # z2jh's singleuser.image splits the reference into name and tag.
            value = {"name": name, "tag": f'"{tagged.split(":", 1)[1]}"'}.get(key.strip(), reference)  # fmt: skip
            lines[i] = f"{key}: {value}  {mark}{rest}"
        text = "".join(lines)
        if text != path.read_text():
            path.write_text(text)
            written.append(path)
    return written
