"""The hub's login for a class: NativeAuthenticator (learners sign up with a password of their own,
the admin approves them), made safe for a shared host. Imported by deploy/jupyterhub's config,
in the hub's own environment.

- The operator makes the admin: its account is written at start from a 0600 password file, so
  sign-up cannot take the admin's name (jupyterhub/nativeauthenticator#140), and a new password
  in that file (`invoke hub --reset-admin-password`) counts from the admin's next login.
- The login, sign-up and approval pages answer only the host (the proxy, on 127.0.0.1 or the
  hub network's gateway), never a container that reaches the hub's API address, and only for the
  Host names the hub is served as (a DNS-rebinding page has another).
- Failed logins slow down per user name and source address, with a growing delay, instead of
  NativeAuthenticator's lock-out of the name, which anyone could repeat to keep a learner out.
- An approved learner is a JupyterHub user at once: the admin page lists them before they log in.
"""

from __future__ import annotations

import os
import time

import bcrypt
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import ToggleAuthorizationHandler
from nativeauthenticator.orm import UserInfo
from tornado import web
from traitlets import Integer, List, Unicode


class ClassAuthenticator(NativeAuthenticator):
    """NativeAuthenticator for a class on a shared host (see the module's docstring)."""

    admin_password_file = Unicode(config=True, help="a 0600 file holding the admin's password")
    host_addresses = List(
        Unicode(), config=True, help="TCP peers that may reach the login pages (the proxy's)"
    )
    host_names = List(Unicode(), config=True, help="Host headers the login pages answer")
    free_failures = Integer(3, config=True, help="failed logins before the delay starts")
    longest_delay = Integer(60, config=True, help="seconds: the delay grows up to this")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.failures: dict[tuple[str, str], tuple[int, float]] = {}
        self.synced = 0.0
        self.sync_admins()

    def sync_admins(self) -> None:
        """Each admin's account, approved, with the password in the file (read when it changed)."""
        if not self.admin_password_file:
            return
        with open(self.admin_password_file, "rb") as file:
            changed = os.fstat(file.fileno()).st_mtime
            if changed == self.synced:
                return
            password = file.read().strip()
        for name in self.admin_users:
            info = UserInfo.find(self.db, name)
            if info is None:
                info = UserInfo(username=name, password=bcrypt.hashpw(password, bcrypt.gensalt()))
                self.db.add(info)
            elif not bcrypt.checkpw(password, info.password):
                info.password = bcrypt.hashpw(password, bcrypt.gensalt())
            info.is_authorized = True
        self.db.commit()
        self.synced = changed

    def create_user(self, username, password, **kwargs):
        """Sign-up, never under an admin's name: the operator makes the admins."""
        if self.normalize_username(username) in self.admin_users:
            self.log.warning("refused a sign-up as the admin %s", username)
            return None
        return super().create_user(username, password, **kwargs)

    def delay(self, key: tuple[str, str]) -> float:
        """Seconds until `key` (user, source) may try again."""
        count, last = self.failures.get(key, (0, 0.0))
        if count < self.free_failures:
            return 0.0
        wait = min(2.0 ** (count - self.free_failures), float(self.longest_delay))
        return max(0.0, last + wait - time.monotonic())

    async def authenticate(self, handler, data):
        name = self.normalize_username(data.get("username", ""))
        key = (name, handler.request.remote_ip or "")
        if self.delay(key) > 0:
            self.log.warning("login of %s from %s refused: wait %.0f s", *key, self.delay(key))
            return None
        if name in self.admin_users:
            self.sync_admins()
        user = await super().authenticate(handler, data)
        if user:
            self.failures.pop(key, None)
        else:
            self.failures[key] = (self.failures.get(key, (0, 0.0))[0] + 1, time.monotonic())
        return user

    def refuse_outsiders(self, request) -> None:
        """403 unless the TCP peer is the host (the proxy) and the Host is one the hub serves."""
        peer = request.connection.context.address
        peer = peer[0] if isinstance(peer, tuple) else ""
        if peer not in self.host_addresses:
            raise web.HTTPError(403, "the login pages are for the hub's own address")
        if self.host_names and request.host not in self.host_names:
            raise web.HTTPError(403, f"this hub is not served as {request.host}")

    def get_handlers(self, app):
        return [(path, self.guarded(handler)) for path, handler in super().get_handlers(app)]

    def guarded(self, handler):
        """`handler`, answering the host only; approval also makes the JupyterHub user."""
        authenticator = self

        class Guarded(handler):
            async def prepare(self):
                authenticator.refuse_outsiders(self.request)
                await super().prepare()

            if issubclass(handler, ToggleAuthorizationHandler):

                async def get(self, slug):
                    await super().get(slug)
                    info = UserInfo.find(self.db, slug)
                    if info is not None and info.is_authorized and self.find_user(slug) is None:
                        self.user_from_username(slug)

        Guarded.__name__ = Guarded.__qualname__ = handler.__name__
        return Guarded
