"""deploy/nginx/dllab-hub.conf's settings that the live test (tests/hub/test_tls_proxy.py) cannot
wait for: a kernel's websocket may stay quiet for far longer than a test runs."""

from __future__ import annotations

import re

from dllab.variants import ROOT

TEXT = (ROOT / "deploy" / "nginx" / "dllab-hub.conf").read_text()
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def test_a_quiet_kernel_websocket_is_kept_for_hours_not_nginxs_60_s():
    """proxy_read_timeout and proxy_send_timeout are set, each to at least 8 hours (a day of class)."""
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        value, unit = re.search(rf"^\s*{directive} (\d+)([smhd]);", TEXT, re.M).groups()
        assert int(value) * SECONDS[unit] >= 8 * 3600, directive
