"""The image's SBOM: cyclonedx-bom's CycloneDX JSON of the venv, completed through the CycloneDX
Python library with the sha256 of each wheel pip installed from the lock and with the Debian
packages in dpkg's database.

The image build runs it in its `proof` stage with the SBOM tools' own Python (docker/Dockerfile):
    python sbom.py VENV_SBOM PIP_REPORT DPKG_STATUS OS_RELEASE [NAME=VALUE ...] > sbom.cdx.json
"""

from __future__ import annotations

import json
import re
import sys


def canonical(name: str) -> str:
    """A package name as PEP 503 compares them (as dllab.locks.canonical: this file stands alone)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_hashes(report: dict) -> dict[str, str]:
    """Package -> sha256 of the wheel pip installed, from `pip install --report` (checked against
    the lock's hashes by --require-hashes as it installed)."""
    found = {}
    for item in report["install"]:
        algorithm, _, digest = item["download_info"]["archive_info"]["hash"].partition("=")
        if algorithm == "sha256":
            found[canonical(item["metadata"]["name"])] = digest
    return found


def dpkg_packages(status: str) -> list[dict[str, str]]:
    """The installed packages in dpkg's status file: one dict of fields each, sorted by name."""
    packages = []
    for paragraph in status.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): ?(.*)$", paragraph, re.MULTILINE))
        if fields.get("Status") == "install ok installed":
            packages.append(fields)
    return sorted(packages, key=lambda fields: fields["Package"])


def os_release(text: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in re.findall(r"^(\w+)=(.*)$", text, re.MULTILINE)}


def complete(
    venv_sbom: dict,
    hashes: dict[str, str],
    packages: list[dict[str, str]],
    release: dict[str, str],
    properties: dict[str, str],
) -> str:
    """The venv's SBOM with the wheels' hashes, the Debian packages and `properties`, as CycloneDX
    1.6 JSON, validated against the schema; reproducible (no serial number, no timestamp)."""
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output import make_outputter
    from cyclonedx.schema import OutputFormat, SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    from packageurl import PackageURL

    bom = Bom.from_json(venv_sbom)
    for component in bom.components:
        digest = hashes.get(canonical(component.name))
        if digest:
            component.hashes.add(HashType(alg=HashAlgorithm.SHA_256, content=digest))
    distro = f"{release.get('ID', 'debian')}-{release.get('VERSION_ID', '')}"
    for fields in packages:
        purl = PackageURL(
            type="deb",
            namespace=release.get("ID", "debian"),
            name=fields["Package"],
            version=fields["Version"],
            qualifiers={"arch": fields["Architecture"], "distro": distro},
        )
        bom.components.add(
            Component(
                type=ComponentType.LIBRARY,
                name=fields["Package"],
                version=fields["Version"],
                purl=purl,
                bom_ref=purl.to_string(),
            )
        )
    for name, value in sorted(properties.items()):
        bom.metadata.properties.add(Property(name=name, value=value))
    # As cyclonedx-py --output-reproducible leaves them: the same image gives the same file.
    bom.serial_number = None
    bom.metadata.timestamp = None
    text = make_outputter(bom, OutputFormat.JSON, SchemaVersion.V1_6).output_as_string(indent=2)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error:
        raise SystemExit(f"dllab: the SBOM is not valid CycloneDX 1.6: {error}")
    return text + "\n"


def main(argv: list[str]) -> None:
    venv_sbom, report, status, release, *pairs = argv
    with open(venv_sbom) as a, open(report) as b, open(status) as c, open(release) as d:
        text = complete(
            json.load(a),
            wheel_hashes(json.load(b)),
            dpkg_packages(c.read()),
            os_release(d.read()),
            dict(pair.split("=", 1) for pair in pairs),
        )
    sys.stdout.write(text)


if __name__ == "__main__":
    main(sys.argv[1:])
