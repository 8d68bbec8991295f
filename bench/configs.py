"""Generated configurations at office and clinic-group scale, for the reload benchmarks.

`approvals(n, grants_per_employee)` writes an approvals.yaml the way IT would: every employee
has an e-mail and one device address (distinct /32s, plus a /30 every 50th employee), and the
first `grants_per_employee` services of the catalog granted, each with the usual fields.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ROOT / "config" / "services.yaml"
SERVICE_IDS = ("facebook", "instagram", "threads", "linkedin", "x", "youtube", "tiktok",
               "pinterest", "snapchat", "reddit")
APPROVER = "it.lead@clinic.example"


def address(i: int) -> str:
    """Employee i's device: 10.x.y.z/32, or a /30 (four addresses) for every 50th employee."""
    base = 4 * i  # each employee owns 4 addresses of 10.0.0.0/8: no overlaps
    text = f"10.{base >> 16 & 255}.{base >> 8 & 255}.{base & 255}"
    return f"{text}/30" if i % 50 == 0 else text


def approvals(employees: int, grants_per_employee: int, *, marker: str = "") -> str:
    """The text of an approvals.yaml. `marker` lands in a comment: a different file, same policy."""
    lines = [
        f"# generated: {employees} employees x {grants_per_employee} grants {marker}",
        f"approver: {APPROVER}",
        "company_domains: [clinic.example]",
        "employees:",
    ]
    for i in range(employees):
        lines += [
            f"  e{i:05d}:",
            f"    email: e{i:05d}@clinic.example",
            f"    addresses: [{address(i)}]",
        ]
    lines.append("grants:")
    for i in range(employees):
        for service in SERVICE_IDS[:grants_per_employee]:
            lines += [
                f"  - employee: e{i:05d}",
                f"    service: {service}",
                f"    approved_by: {APPROVER}",
                "    approved_on: 2026-01-15",
            ]
    return "\n".join(lines) + "\n"


def write_config(directory: Path, employees: int, grants_per_employee: int) -> Path:
    """A config directory with the shipped catalog and a generated approvals.yaml."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "services.yaml").write_text(SERVICES.read_text())
    (directory / "approvals.yaml").write_text(approvals(employees, grants_per_employee))
    return directory
