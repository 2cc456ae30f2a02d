"""Bundles: signed with OpenSSH, refused whole at the first byte that is not what it must be.

Here on a bundle of small files and real ssh-keygen keys; tests/image/test_provenance.py makes
and loads the bundle of a real image through the engine.
"""

from __future__ import annotations

import hashlib
import subprocess
import tarfile

import pytest

from dllab import bundle, variants
from dllab.errors import UserError
from dllab.runner import Runner

HERE = "linux-x86_64"


@pytest.fixture(autouse=True)
def engine_platform(monkeypatch):
    """These bundles are for the platform the engine runs (tests change it to refuse one)."""
    monkeypatch.setattr(variants, "engine_platform", lambda host=None: HERE)


def keypair(folder, name):
    """A new ed25519 key without a passphrase: (private key, public key)."""
    key = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
                   check=True)  # fmt: skip
    return key, key.with_suffix(".pub")


@pytest.fixture
def signed(tmp_path):
    """(bundle, public key, private key, files): a bundle of four small files, signed."""
    work = tmp_path / "work"
    work.mkdir()
    files = {
        bundle.IMAGE: bytes(range(256)) * 13,  # not a multiple of 512: padding follows
        "lock.txt": b"six==1.17.0\n",
        "sbom.cdx.json": b'{"bomFormat": "CycloneDX"}\n',
        "labs.tar": b"\0" * 1024,
    }
    for name, data in files.items():
        (work / name).write_bytes(data)
    key, public = keypair(tmp_path, "teacher")
    about = {"variant": "cpu", "platform": HERE, "image": "dllab:cpu", "revision": "abc",
             "image_id": "sha256:" + "1" * 64, "venv_tree": "sha256:" + "2" * 64}  # fmt: skip
    out = tmp_path / "class.dllab"
    bundle.seal(Runner(), work, list(files), about, key, out)
    return out, public, key, files


def check(path, trust, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    return bundle.check(Runner(), path, trust, scratch)


def test_a_sealed_bundle_is_a_plain_tar_that_checks_and_keeps_only_the_image(signed, tmp_path):
    """tar lists it; check() accepts it, names the signer and leaves the image, byte for byte."""
    path, public, _, files = signed
    with tarfile.open(path) as listing:
        assert listing.getnames() == [bundle.MANIFEST, bundle.SIGNATURE, *files]
    manifest, signer = check(path, public, tmp_path)
    assert signer == "bundle-signer" and manifest["platform"] == HERE
    assert {f["name"]: f["sha256"] for f in manifest["files"]} == {
        name: hashlib.sha256(data).hexdigest() for name, data in files.items()
    }
    assert (tmp_path / "scratch" / bundle.IMAGE).read_bytes() == files[bundle.IMAGE]
    kept = sorted(p.name for p in (tmp_path / "scratch").iterdir() if p.suffix != ".sig")
    assert kept == ["allowed_signers", bundle.IMAGE]


def regions(data: bytes) -> list[int]:
    """Offsets that cover every part of a bundle: in each header its first byte, name, size
    field, checksum and last byte; each file's first, middle and last byte; the first and last
    byte of the padding after it; the first and last byte of the end marker."""
    offsets, start = [], 0
    while data[start : start + 512] != bytes(512):
        size = tarfile.TarInfo.frombuf(data[start : start + 512], "utf-8", "strict").size
        offsets += [start + i for i in (0, 5, 124 + 5, 148 + 2, 511)]
        body = start + 512
        offsets += [body, body + size // 2, body + size - 1]
        if bundle.padding(size):
            offsets += [body + size, body + size + bundle.padding(size) - 1]
        start = body + size + bundle.padding(size)
    return [*offsets, start, len(data) - 1]


def test_one_changed_byte_anywhere_is_refused(signed, tmp_path):
    """Headers, manifest, signature, each file, the padding between them, the end marker: one
    byte changed in any part of the bundle is refused."""
    path, public, _, _ = signed
    original = path.read_bytes()
    offsets = regions(original)
    assert len(offsets) > 6 * 8  # six members, each header, body and padding
    for offset in offsets:
        damaged = bytearray(original)
        damaged[offset] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(UserError, match="nothing loaded"):
            check(path, public, tmp_path)


@pytest.mark.parametrize("keep", [0, 100, 512, 2000, -1], ids=lambda k: f"cut-{k}")
def test_a_truncated_bundle_is_refused(signed, tmp_path, keep):
    """Cut anywhere, even at a block boundary or one byte short of the end."""
    path, public, _, _ = signed
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(UserError, match="nothing loaded"):
        check(path, public, tmp_path)


def test_bytes_added_after_the_end_are_refused(signed, tmp_path):
    """A bundle is exactly what `invoke bundle` wrote: nothing may follow its end marker."""
    path, public, _, _ = signed
    path.write_bytes(path.read_bytes() + b"\0" * 512)
    with pytest.raises(UserError, match="after its last file"):
        check(path, public, tmp_path)


def test_a_key_that_did_not_sign_it_is_refused(signed, tmp_path):
    """Trusting another key: refused before any file is read."""
    path, _, _, _ = signed
    _, other = keypair(tmp_path, "stranger")
    with pytest.raises(UserError, match="is not signed by a key in"):
        check(path, other, tmp_path)


def test_an_allowed_signers_file_names_who_signed(signed, tmp_path):
    """OpenSSH's allowed_signers format: the signer is found by its key and named."""
    path, public, _, _ = signed
    allowed = tmp_path / "allowed_signers"
    _, other = keypair(tmp_path, "stranger")
    allowed.write_text(f"stranger@school {other.read_text()}"
                       f'teacher@school namespaces="dllab" {public.read_text()}')  # fmt: skip
    assert check(path, allowed, tmp_path)[1] == "teacher@school"


def test_a_signature_made_for_another_purpose_is_refused(signed, tmp_path):
    """A signature of the same manifest in another namespace (-n file) does not count."""
    path, public, key, _ = signed
    with tarfile.open(path) as original:
        manifest = original.extractfile(bundle.MANIFEST).read()
    (tmp_path / "m").write_bytes(manifest)
    subprocess.run(["ssh-keygen", "-Y", "sign", "-q", "-f", str(key), "-n", "file",
                    str(tmp_path / "m")], check=True)  # fmt: skip
    forged = (tmp_path / "m.sig").read_bytes()
    data = path.read_bytes()
    start = len(bundle.header(bundle.MANIFEST, len(manifest))) + len(manifest)
    start += bundle.padding(len(manifest))
    old_size = tarfile.TarInfo.frombuf(data[start : start + 512], "utf-8", "strict").size
    end = start + 512 + old_size + bundle.padding(old_size)
    swapped = bundle.header(bundle.SIGNATURE, len(forged)) + forged
    path.write_bytes(data[:start] + swapped + bytes(bundle.padding(len(forged))) + data[end:])
    with pytest.raises(UserError, match="is not signed by a key in"):
        check(path, public, tmp_path)


def test_a_bundle_for_another_platform_is_refused(signed, tmp_path, monkeypatch):
    """Signed and whole, but made for linux-x86_64: an arm64 engine refuses it, naming both."""
    path, public, _, _ = signed
    monkeypatch.setattr(variants, "engine_platform", lambda host=None: "linux-aarch64")
    with pytest.raises(UserError, match="is for linux-x86_64; this engine runs linux-aarch64"):
        check(path, public, tmp_path)


def test_progress_shows_each_tenth_once(capsys):
    """Ten lines for a whole pass, however the work is cut into chunks."""
    progress = bundle.Progress("checking x", 1000)
    for _ in range(7):
        progress.advance(150)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10 and lines[-1].endswith("(100%)") and "checking x" in lines[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["load", "no-such.dllab", "--trust", "key.pub"], "FILE no-such.dllab: no such file"),
        (["load", "x", "--trust", ""], "--trust is required"),
        (["make", "--out", "b.dllab", "--key", "no-such-key"], "--key no-such-key: no such file"),
    ],
    ids=["no-bundle", "no-trust", "no-key"],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    """A missing file or flag: one `dllab: ...` line, no traceback, exit 2."""
    assert bundle.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dllab: ") and message in err and len(err.splitlines()) == 1
