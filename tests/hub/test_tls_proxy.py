"""deploy/nginx/dllab-hub.conf for real: Debian's nginx, with a certificate from a CA made here, in
front of `python -m dllab.hub`. A learner signs up, is approved, logs in, spawns, and runs code in a
kernel over wss://; every client trusts the CA, and no check is ever turned off."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from dllab.containers import any_free_port
from dllab.variants import ROOT
from tests.hub.client import form, run_code
from tests.support import missing

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CONFIG = ROOT / "deploy" / "nginx" / "dllab-hub.conf"
PASSWORD = "dllab-course-2026!"
LEARNER = "dana"


def make_ca_and_certificate(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signs for localhost and 127.0.0.1: (CA, certificate, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject, issuer, public_key, signing_key, ca: bool, extensions=()):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("dllab test CA", "dllab test CA", ca_key.public_key(), ca_key, ca=True)
    names = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    server_auth = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    leaf = certificate("localhost", "dllab test CA", key.public_key(), ca_key, False, (names, server_auth))  # fmt: skip
    paths = folder / "ca.pem", folder / "fullchain.pem", folder / "privkey.pem"
    pem = serialization.Encoding.PEM
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    paths[2].touch(mode=0o600)
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def render(hub_port: int, http_port: int, https_port: int, cert: Path, key: Path) -> str:
    """The shipped file with only its EDIT values (and the ports, IPv4 only) replaced."""
    text = CONFIG.read_text()
    replacements = {
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;": "",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "listen [::]:443 ssl;": "",
        "hub.example.org": "localhost",
        "/etc/ssl/dllab/fullchain.pem": str(cert),
        "/etc/ssl/dllab/privkey.pem": str(key),
        "http://127.0.0.1:8000": f"http://127.0.0.1:{hub_port}",
    }
    for old, new in replacements.items():
        assert old in text, f"{CONFIG.name} no longer has {old!r}: update this test and CLASS.md"
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def ports() -> tuple[int, int]:
    """nginx's HTTP and HTTPS ports, chosen before the hub starts: it must know its public name."""
    return any_free_port(), any_free_port()


@pytest.fixture(scope="module")
def hub_settings(ports) -> dict[str, str]:
    """The hub is served as localhost:<https port> (its login pages answer that name) behind
    nginx on 127.0.0.1 (whose X-Forwarded-For it trusts), as deploy/CLASS.md says."""
    return {
        "DLLAB_HUB_PUBLIC_HOSTS": f"localhost:{ports[1]}",
        "DLLAB_HUB_TRUSTED_PROXIES": "127.0.0.1",
    }


@pytest.fixture(scope="module")
def proxy(hub, ports, tmp_path_factory):
    """Debian's nginx running deploy/nginx/dllab-hub.conf in front of the hub; its URLs and CA."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if not nginx:
        missing("nginx", "no nginx: `apt-get install nginx` (the TLS reverse-proxy test runs it)")
    folder = tmp_path_factory.mktemp("nginx")
    ca, cert, key = make_ca_and_certificate(folder)
    http_port, https_port = ports
    (folder / "dllab-hub.conf").write_text(render(hub.port, http_port, https_port, cert, key))
    # A main file of its own: the site file as shipped, inside nginx's http block, with the pid,
    # logs and temporary files here instead of the system's.
    temp = "".join(f"{kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))  # fmt: skip
    (folder / "nginx.conf").write_text(
        f"daemon off; pid {folder / 'nginx.pid'}; error_log {folder / 'error.log'};\n"
        "events { worker_connections 256; }\n"
        f"http {{ access_log {folder / 'access.log'}; {temp} include {folder / 'dllab-hub.conf'}; }}\n"
    )
    command = [nginx, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", str(folder / "error.log")]  # fmt: skip
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base, session = f"https://localhost:{https_port}", browser(str(ca))
    deadline = time.monotonic() + 30
    while True:
        try:
            session.get(f"{base}/hub/api/", timeout=5)
            break
        except requests.exceptions.SSLError:
            raise
        except requests.ConnectionError:
            assert process.poll() is None, (folder / "error.log").read_text()
            assert time.monotonic() < deadline, "nginx did not answer in 30 s"
            time.sleep(0.2)
    yield {"https": base, "http": f"http://localhost:{http_port}", "ca": str(ca)}
    process.terminate()
    process.wait(timeout=30)


def browser(ca: str) -> requests.Session:
    """A session that trusts the test CA (and nothing is turned off to make it work)."""
    session = requests.Session()
    session.verify = ca
    # Else REQUESTS_CA_BUNDLE, where set, silently replaces session.verify (psf/requests#3829).
    session.trust_env = False
    return session


def log_in_admin(hub, proxy) -> requests.Session:
    """The admin's logged-in session, with the password the hub generated into its state folder."""
    admin = browser(proxy["ca"])
    name = json.loads((hub.state / "hub.json").read_text())["admin"]
    assert form(admin, f"{proxy['https']}/hub/login", username=name, password=hub.admin_password).status_code == 302  # fmt: skip
    return admin


def wait_until_spawned(session: requests.Session, base: str, name: str, timeout: float = 180):
    """Poll the spawn-pending page, as the browser's page does, until it sends us to the server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = session.get(f"{base}/hub/spawn-pending/{name}", allow_redirects=False, timeout=30)
        if page.status_code == 302 and f"/user/{name}/" in page.headers["Location"]:
            return
        assert page.status_code < 400, page.text[-1000:]
        time.sleep(0.5)
    raise AssertionError(f"{name}'s server was not ready in {timeout} s")


@pytest.fixture(scope="module")
def learner(hub, proxy):
    """dana: signed up, approved by the admin, logged in and spawned, all through https://."""
    base = proxy["https"]
    session = browser(proxy["ca"])
    signed = form(session, f"{base}/hub/signup", username=LEARNER, signup_password=PASSWORD,
                  signup_password_confirmation=PASSWORD)  # fmt: skip
    assert signed.status_code == 200, signed.text[-500:]
    approved = log_in_admin(hub, proxy).get(f"{base}/hub/authorize/{LEARNER}", allow_redirects=False, timeout=30)  # fmt: skip
    assert approved.status_code == 302, approved.text[-500:]
    logged_in = form(session, f"{base}/hub/login", username=LEARNER, password=PASSWORD)
    assert logged_in.status_code == 302, logged_in.text[-500:]
    session.get(f"{base}/hub/spawn", timeout=60)
    wait_until_spawned(session, base, LEARNER)
    # JupyterLab's page, reached through the hub's OAuth redirects, sets the server's cookies.
    lab = session.get(f"{base}/user/{LEARNER}/lab", timeout=60)
    assert lab.status_code == 200 and lab.url.startswith(f"{base}/user/{LEARNER}/lab"), lab.url
    return session


def test_the_hub_answers_only_over_https_with_hsts_and_secure_cookies(proxy, learner):
    """Plain HTTP redirects to HTTPS; answers carry HSTS; the hub saw https (its cookies are Secure)."""
    plain = requests.get(f"{proxy['http']}/hub/login", allow_redirects=False, timeout=30)
    assert plain.status_code == 301
    assert plain.headers["Location"] == "https://localhost/hub/login"
    answer = learner.get(f"{proxy['https']}/hub/home", timeout=30)
    assert answer.status_code == 200
    assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"
    hub_cookies = [c for c in learner.cookies if c.name.startswith("jupyterhub-")]
    assert hub_cookies and all(c.secure for c in hub_cookies), [(c.name, c.secure) for c in hub_cookies]  # fmt: skip
    with pytest.raises(requests.exceptions.SSLError):  # a client that does not know the CA refuses
        requests.get(f"{proxy['https']}/hub/login", timeout=30)


def test_a_learners_kernel_runs_code_over_wss(proxy, learner):
    """A kernel started with the browser's cookies runs code over wss://, as dana, in her container."""
    import websocket

    base = f"{proxy['https']}/user/{LEARNER}"
    xsrf = learner.cookies.get("_xsrf", path=f"/user/{LEARNER}/")
    started = learner.post(f"{base}/api/kernels", json={"name": "python3"}, headers={"X-XSRFToken": xsrf}, timeout=60)  # fmt: skip
    assert started.status_code == 201, started.text
    url = f"{base}/api/kernels/{started.json()['id']}/channels"
    cookie = requests.cookies.get_cookie_header(learner.cookies, requests.Request("GET", url))
    ws = websocket.create_connection(
        url.replace("https://", "wss://"), cookie=cookie, timeout=120,
        sslopt={"ca_certs": proxy["ca"]},  # verifies the chain and the host name, as a browser does
    )  # fmt: skip
    out = run_code(ws, "import os, socket; print(os.environ['JUPYTERHUB_USER'], socket.gethostname())")  # fmt: skip
    user, host = out.split()
    assert user == LEARNER and host != os.uname().nodename  # dana's own container, not this host


def test_a_notebook_of_several_megabytes_uploads_through_the_proxy(proxy, learner):
    """A 5 MB file (nginx's default cap is 1 MB) is saved into the learner's work and reads back."""
    base = f"{proxy['https']}/user/{LEARNER}"
    xsrf = {"X-XSRFToken": learner.cookies.get("_xsrf", path=f"/user/{LEARNER}/")}
    text = "x" * (5 * 2**20)
    saved = learner.put(f"{base}/api/contents/upload.txt", headers=xsrf, timeout=60,
                        json={"type": "file", "format": "text", "content": text})  # fmt: skip
    assert saved.status_code in (200, 201), saved.text[-500:]
    read = learner.get(f"{base}/api/contents/upload.txt", timeout=60)
    assert read.json()["content"] == text


def test_tensorboard_answers_at_the_learners_hub_url(proxy, learner):
    """/user/<name>/tensorboard/, the address the labs give hub users, serves TensorBoard."""
    page = learner.get(f"{proxy['https']}/user/{LEARNER}/tensorboard/", timeout=90)
    assert page.status_code == 200 and "<title>TensorBoard</title>" in page.text, page.text[-500:]
    where = learner.get(f"{proxy['https']}/user/{LEARNER}/tensorboard/data/environment", timeout=30)
    assert where.json()["data_location"] == "/work/runs"  # the labs' DLLAB_RUNS, in her volume
