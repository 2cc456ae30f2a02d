"""Signed offline bundles for classrooms: one file with an image (docker save, gzip), its lock, SBOM
and labs, and a manifest of their sha256 sums signed with OpenSSH (`ssh-keygen -Y sign`, namespace
dllab): no network and no key infrastructure beyond an SSH key.

The file is a plain tar (`tar -tvf` lists it): manifest.json, manifest.json.sig, then the files
the manifest lists, in its order. Every byte of it is accounted for before anything reaches the
engine: the manifest by its signature, each file by its sum, and the tar headers, padding and end
by being exactly what `invoke bundle` writes for those names and sizes. So one changed byte
anywhere, a wrong key, a cut-short file or another platform's bundle is refused, nothing loaded.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import BinaryIO

from dllab import containers, provenance, runner, variants
from dllab.errors import Parser, UserError, report
from dllab.runner import Runner

FORMAT = "dllab-bundle 1"
NAMESPACE = "dllab"  # ssh-keygen -Y sign -n: a signature for dllab bundles is good for nothing else
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
IMAGE = "image.tar.gz"
# The bundle's other files, from the image itself: exactly what it was built from and with.
FROM_IMAGE = (
    ("lock.txt", ["/bin/cat", "/opt/venv/dllab-lock.txt"]),
    ("sbom.cdx.json", ["/bin/cat", provenance.SBOM]),
    ("labs.tar", ["/bin/tar", "-C", "/opt/dllab", "-c", "labs"]),
)
BLOCK = 512  # tar's unit: headers, and the padding after each file
END = bytes(2 * BLOCK)  # tar's end-of-archive marker
CHUNK = 1 << 20
GZIP_LEVEL = 1  # level 6 saves 12% of the size for 2.4 times the time: BENCHMARKS.md
SMALL = {MANIFEST: 1 << 20, SIGNATURE: 1 << 16}  # read into memory: capped
KEY_TYPES = ("ssh-", "ecdsa-", "sk-ssh-", "sk-ecdsa-")  # how a public key line starts
ARMOR = (b"-----BEGIN SSH SIGNATURE-----", b"-----END SSH SIGNATURE-----")


class Progress:
    """`dllab: WHAT: 1.2 of 2.8 GB (40%)` on stderr at each tenth, for files of gigabytes."""

    def __init__(self, what: str, total: int):
        self.what, self.total, self.done, self.shown = what, max(total, 1), 0, 0

    def advance(self, count: int) -> None:
        self.done += count
        while self.shown < min(10, self.done * 10 // self.total):
            self.shown += 1
            print(f"dllab: {self.what}: {self.done / 1e9:.2f} of {self.total / 1e9:.2f} GB "
                  f"({self.shown * 10}%)", file=sys.stderr, flush=True)  # fmt: skip


def header(name: str, size: int) -> bytes:
    """The tar header `invoke bundle` writes for a file: fixed owner, mode and time."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "strict")


def padding(size: int) -> int:
    return -size % BLOCK


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def inspect(run: Runner, image: str, template: str) -> str:
    return provenance.capture(run, containers.image_inspect_command(image, template)).strip()


def save(run: Runner, image: str, dest: Path) -> None:
    """docker save `image`, gzip-compressed into `dest`, with progress over the image's size."""
    progress = Progress(f"saving {image}", int(inspect(run, image, "{{.Size}}") or 0))
    proc = run.start(containers.save_command(image), stdout=subprocess.PIPE)
    assert proc is not None and proc.stdout is not None
    with proc, gzip.GzipFile(dest, "wb", compresslevel=GZIP_LEVEL, mtime=0) as out:
        while chunk := proc.stdout.read(CHUNK):
            out.write(chunk)
            progress.advance(len(chunk))
    if proc.returncode:
        raise UserError(f"docker save {image} failed (exit {proc.returncode}): see above")


def from_image(run: Runner, image: str, program: list[str], dest: Path, platform: str) -> None:
    """What `program` prints inside `image`, into `dest`."""
    with open(dest, "wb") as out:
        proc = run.start(
            containers.in_image_command(image, program, platform),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert proc is not None
        proc.communicate()
    if proc.returncode:
        raise UserError(f"{image} has no {program[-1]}: rebuild it with `invoke build`")


def keygen(run: Runner, *args: str, data: bytes = b"") -> runner.Done:
    """`ssh-keygen -Y ARGS` (OpenSSH 8.2 or newer) with `data` on stdin; a passphrase, if the key
    has one, is asked on the terminal. A UserError where OpenSSH is not installed."""
    done = run(["ssh-keygen", "-Y", *args], input=data)
    if done.code == 127:
        raise UserError(
            "ssh-keygen is not installed: install OpenSSH (Debian and Ubuntu: openssh-client)"
        )
    return done


def sign(run: Runner, manifest: Path, key: Path) -> Path:
    """ssh-keygen -Y sign: manifest.json.sig beside `manifest`."""
    done = keygen(run, "sign", "-q", "-f", str(key), "-n", NAMESPACE, str(manifest))
    if not done.ok:
        raise UserError(f"ssh-keygen could not sign with --key {key}: {done.last_line()}")
    return manifest.with_name(SIGNATURE)


def make(
    run: Runner, variant: variants.Variant, out: Path, key: Path, platform: str | None = None
) -> str:
    """Write the signed bundle of `variant`'s image to `out` (through a scratch file beside it,
    renamed at the end: never a half-written bundle); say what it holds."""
    if not key.is_file():
        raise UserError(
            f"--key {key}: no such file (your OpenSSH private key, e.g. ~/.ssh/id_ed25519)"
        )
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: no folder {out.parent}")
    containers.check_engine(run)
    platform, image = provenance.image_of(run, variant, platform)
    venv_tree = inspect(run, image, containers.label_template(provenance.LABEL))
    if not provenance.HASH_FORMAT.fullmatch(venv_tree):
        raise UserError(
            f"{image} has no {provenance.LABEL} label: build it with "
            f"`invoke build --variant {variant.name}`"
        )
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".dllab-bundle-") as scratch:
        work = Path(scratch)
        save(run, image, work / IMAGE)
        for name, program in FROM_IMAGE:
            from_image(run, image, program, work / name, platform)
        about = {
            "variant": variant.name,
            "platform": platform,
            "image": image,
            "image_id": inspect(run, image, "{{.Id}}"),
            "venv_tree": venv_tree,
            "revision": inspect(run, image, containers.label_template("org.opencontainers.image.revision")),
        }  # fmt: skip
        seal(run, work, [IMAGE, *(name for name, _ in FROM_IMAGE)], about, key, out)
    size = out.stat().st_size
    return f"wrote {out}: {image} ({platform}), {size / 1e9:.2f} GB, {provenance.LABEL}={venv_tree}"


def seal(run: Runner, work: Path, names: list[str], about: dict, key: Path, out: Path) -> None:
    """The manifest of the files `names` in `work` (their sizes and sums, and `about`), signed with
    `key`, and the bundle of all of them at `out` (written beside, then renamed into place)."""
    files = [
        {"name": name, "size": (work / name).stat().st_size, "sha256": sha256_of(work / name)}
        for name in names
    ]
    manifest = {"format": FORMAT, **about, "files": files}
    (work / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    sign(run, work / MANIFEST, key)
    partial = work / "bundle.partial"
    write(partial, [work / MANIFEST, work / SIGNATURE, *(work / name for name in names)], out.name)
    os.replace(partial, out)


def write(dest: Path, files: list[Path], name: str) -> None:
    """The bundle `name`: each file as a tar member, in order, then tar's end marker."""
    total = sum(path.stat().st_size for path in files)
    progress = Progress(f"writing {name}", total)
    with open(dest, "wb") as out:
        for path in files:
            size = path.stat().st_size
            out.write(header(path.name, size))
            with open(path, "rb") as source:
                while chunk := source.read(CHUNK):
                    out.write(chunk)
                    progress.advance(len(chunk))
            out.write(bytes(padding(size)))
        out.write(END)


class Reader:
    """Reads a bundle strictly in order, refusing the first byte that is not what it must be."""

    def __init__(self, handle: BinaryIO, name: str):
        self.handle, self.name = handle, name

    def refuse(self, why: str) -> UserError:
        return UserError(f"{self.name} {why}: nothing loaded")

    def exact(self, count: int) -> bytes:
        data = self.handle.read(count)
        if len(data) < count:
            raise self.refuse("is truncated (it ends too soon)")
        return data

    def start(self, name: str, size: int | None = None) -> int:
        """Read the header of the member `name` (of `size`, where the manifest says); its size."""
        block = self.exact(BLOCK)
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "strict")
        except (tarfile.HeaderError, UnicodeDecodeError):
            raise self.refuse(
                f"is damaged or not a dllab bundle (a bad header where {name} starts)"
            ) from None
        if info.name != name or (size is not None and info.size != size):
            raise self.refuse(
                f"is damaged or not a dllab bundle ({info.name} where {name} should be)"
            )
        if block != header(name, info.size):
            raise self.refuse(f"is damaged (the header of {name} was changed)")
        return info.size

    def finish(self, size: int) -> None:
        if self.exact(padding(size)).strip(b"\0"):
            raise self.refuse("is damaged (bytes changed between its files)")

    def small(self, name: str) -> bytes:
        size = self.start(name)
        if size > SMALL[name]:
            raise self.refuse(f"is damaged or not a dllab bundle ({name} of {size} bytes)")
        data = self.exact(size)
        self.finish(size)
        return data

    def member(self, entry: dict, dest: Path | None, progress: Progress) -> None:
        """Read one listed file, checking its sum; keep it in `dest` if given."""
        name, size = entry["name"], entry["size"]
        self.start(name, size)
        digest = hashlib.sha256()
        with open(dest or os.devnull, "wb") as out:
            left = size
            while left:
                chunk = self.exact(min(CHUNK, left))
                digest.update(chunk)
                out.write(chunk)
                progress.advance(len(chunk))
                left -= len(chunk)
        self.finish(size)
        if digest.hexdigest() != entry["sha256"]:
            raise self.refuse(f"was changed: the sha256 of its {name} is not the signed one")

    def end(self) -> None:
        if self.exact(len(END)) != END or self.handle.read(1):
            raise self.refuse("is damaged (bytes changed or added after its last file)")


def allowed_signers(trust: Path, work: Path) -> tuple[Path, str | None]:
    """An allowed_signers file and the principal to verify as: `trust` as it is, or made from a
    public key (the principal is then found from the signature)."""
    try:
        lines = [line for line in trust.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError):
        raise UserError(
            f"--trust {trust}: not a readable public key or allowed_signers file"
        ) from None
    if lines and lines[0].startswith(KEY_TYPES):
        made = work / "allowed_signers"
        made.write_text(
            "".join(f'bundle-signer namespaces="{NAMESPACE}" {line}\n' for line in lines)
        )
        return made, "bundle-signer"
    return trust, None


def armored(signature: bytes) -> bool:
    """Whether `signature` is exactly as ssh-keygen writes one: ssh-keygen reads past whitespace
    and base64's unused bits, so two files could carry one signature; a bundle allows one."""
    lines = signature.split(b"\n")
    try:
        blob = base64.b64decode(b"".join(lines[1:-2]), validate=True)
    except ValueError:
        return False
    text = base64.b64encode(blob)
    body = [text[i : i + 70] for i in range(0, len(text), 70)]
    return signature == b"\n".join([ARMOR[0], *body, ARMOR[1], b""])


def check_signature(
    run: Runner, manifest: bytes, signature: bytes, trust: Path, work: Path, name: str
) -> str:
    """The principal whose key in `trust` signed `manifest` for dllab, or a UserError."""
    if not armored(signature):
        raise UserError(f"{name} is damaged (its signature was changed): nothing loaded")
    (work / SIGNATURE).write_bytes(signature)
    allowed, principal = allowed_signers(trust, work)
    refused = UserError(
        f"{name} is not signed by a key in {trust}, or was changed after signing: nothing loaded"
    )

    if principal is None:
        found = keygen(run, "find-principals", "-s", str(work / SIGNATURE), "-f", str(allowed))
        if not found.ok or not found.out.strip():
            raise refused
        principal = found.out.split()[0]
    checked = keygen(
        run, "verify", "-f", str(allowed), "-I", principal, "-n", NAMESPACE,
        "-s", str(work / SIGNATURE), data=manifest,
    )  # fmt: skip
    if not checked.ok:
        raise refused
    return principal


def check(run: Runner, bundle: Path, trust: Path, work: Path) -> tuple[dict, str]:
    """Read `bundle` whole, refusing it at the first byte that is not what it must be: its
    signature by a key in `trust`, its platform, every sum, every header and padding byte. The
    image is left in `work`; the manifest and the signer's name are returned."""
    with open(bundle, "rb") as handle:
        reader = Reader(handle, str(bundle))
        text, signature = reader.small(MANIFEST), reader.small(SIGNATURE)
        signer = check_signature(run, text, signature, trust, work, str(bundle))
        manifest = json.loads(text)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise reader.refuse(
                f"is signed, but not a {FORMAT!r} bundle: use the dllab that made it"
            )
        engine = variants.engine_platform()
        if manifest["platform"] != engine:
            raise reader.refuse(
                f"is for {manifest['platform']}; this engine runs {engine} images: bundle the "
                f"image built for {engine} (`invoke bundle --platform {engine}`)"
            )
        progress = Progress(f"checking {bundle.name}", sum(f["size"] for f in manifest["files"]))
        for entry in manifest["files"]:
            reader.member(entry, work / IMAGE if entry["name"] == IMAGE else None, progress)
        reader.end()
    return manifest, signer


def load(run: Runner, bundle: Path, trust: Path) -> str:
    """Check `bundle` whole with nothing sent to the engine, then load its image and check it is
    the one the signed manifest names; say what it loaded."""
    for flag, path in (("FILE", bundle), ("--trust", trust)):
        if not path.is_file():
            raise UserError(f"{flag} {path}: no such file")
    containers.check_engine(run)
    with tempfile.TemporaryDirectory(prefix="dllab-load-") as scratch:
        manifest, signer = check(run, bundle, trust, Path(scratch))
        # Every byte checked: only now does anything reach the engine.
        send(run, Path(scratch) / IMAGE)
    image = manifest["image"]
    found = (inspect(run, image, "{{.Id}}"), inspect(run, image, containers.label_template(provenance.LABEL)))  # fmt: skip
    if found != (manifest["image_id"], manifest["venv_tree"]):
        raise UserError(
            f"{bundle}: the image loaded as {image} ({found[0]}, {provenance.LABEL}={found[1]}) is "
            f"not the one its signed manifest names ({manifest['image_id']}): do not use it"
        )
    return (
        f"loaded {image} ({manifest['variant']}, {manifest['platform']}, revision "
        f"{manifest['revision']}) from {bundle}, signed by {signer}: {provenance.LABEL}="
        f"{manifest['venv_tree']}; its lock, SBOM and labs: tar -xf {bundle}"
    )


def send(run: Runner, archive: Path) -> None:
    """docker load `archive` from stdin, with progress."""
    progress = Progress(f"loading {archive.name}", archive.stat().st_size)
    proc = run.start(containers.load_command(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert proc is not None and proc.stdin is not None
    with open(archive, "rb") as source, proc:
        while chunk := source.read(CHUNK):
            proc.stdin.write(chunk)
            progress.advance(len(chunk))
        proc.stdin.close()
    if proc.returncode:
        raise UserError(f"docker load failed (exit {proc.returncode}): see above")


def make_command(run: Runner, variant: str, out: str, key: str, platform: str | None) -> None:
    """`invoke bundle`: the flags checked, then the bundle written; say what it holds."""
    for flag, value in (("--out", out), ("--key", key)):
        if not value:
            raise UserError(f"{flag} is required: see `invoke --help bundle`")
    message = make(run, variants.get(variant), Path(out), Path(key).expanduser(), platform)
    print(f"dllab: {message}")


def load_command(run: Runner, file: str, trust: str) -> None:
    """`invoke load`: the bundle checked whole, then loaded; say what was loaded."""
    if not trust:
        raise UserError("--trust is required: the signer's public key or allowed_signers file")
    print(f"dllab: {load(run, Path(file), Path(trust).expanduser())}")


def main(argv: list[str] | None = None) -> int:
    """`python -m dllab.bundle make|load`: what `invoke bundle` and `invoke load` do."""
    parser = Parser(prog="python -m dllab.bundle")
    sub = parser.add_subparsers(dest="action", required=True)
    making = sub.add_parser("make", help="write a signed bundle of an image")
    making.add_argument("--variant", default="cpu")
    making.add_argument("--platform", help="the image's lock platform (default: the engine's)")
    making.add_argument("--out", default="", help="the bundle file to write")
    making.add_argument("--key", default="", help="OpenSSH private key to sign with")
    loading = sub.add_parser("load", help="verify a bundle, then load its image")
    loading.add_argument("file", help="the bundle")
    loading.add_argument("--trust", default="", help="public key or allowed_signers file")
    try:
        args = parser.parse_args(argv)
        if args.action == "make":
            make_command(Runner(), args.variant, args.out, args.key, args.platform)
        else:
            load_command(Runner(), args.file, args.trust)
        return 0
    except UserError as exc:
        return report(exc)


if __name__ == "__main__":
    sys.exit(main())
