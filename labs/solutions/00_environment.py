"""Reference solutions for 00_environment.py."""


def device_kinds(report, target):
    """The set of device kinds `target` sees in `report`; empty if it is absent or failed."""
    for row in report["frameworks"]:
        if row["target"] == target and not row.get("error"):
            return {device["kind"] for device in row["devices"]}
    return set()


def pick_device(kinds):
    """The best of `kinds`: cuda, then mps, then cpu."""
    for kind in ("cuda", "mps"):
        if kind in kinds:
            return kind
    return "cpu"
