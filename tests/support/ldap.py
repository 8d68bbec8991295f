"""A real OpenLDAP server (Debian `slapd`) for the directory tests, on a free loopback port.

`Slapd(tmp_path).start()` writes a slapd.conf and a small directory (dc=clinic,dc=example:
people, a staff group, a service account), starts slapd in the foreground and waits until it
answers a search. `add_member`/`remove_member` change the staff group with `ldapmodify` as
the test's root DN; `pause`/`resume` freeze the process (SIGSTOP) to make it slow; `stop`
takes it down.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from support import tls

SUFFIX = "dc=clinic,dc=example"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-pw-for-tests-only"
SERVICE_DN = f"cn=gatekeeper,ou=services,{SUFFIX}"
SERVICE_PASSWORD = "svc-Bind-Secret-5e1f9c"  # the secrets tests look for this everywhere
STAFF_DN = f"cn=staff,ou=groups,{SUFFIX}"
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
SLAPD = "/usr/sbin/slapd"


@dataclass(frozen=True)
class Account:
    uid: str
    password: str
    mail: str
    name: str
    staff: bool = True

    @property
    def dn(self) -> str:
        return f"uid={self.uid},ou=people,{SUFFIX}"


ACCOUNTS = (
    Account("dave", "dave-pw-1", "dave@clinic.example", "Dave Doe"),
    Account("erin", "erin:pw-2", "erin@clinic.example", "Erin Example"),
    Account("frank", "frank-pw-3", "frank@clinic.example", "Frank Leaver"),
    Account("mallory", "mallory-pw-4", "mallory@clinic.example", "Mallory Outsider",
            staff=False),
    Account("gina", "gina-pw-5", "gina@gmail.com", "Gina Private"),
)


def available() -> bool:
    return Path(SLAPD).exists() and shutil.which("ldapmodify") is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Slapd:
    def __init__(self, workdir: Path, accounts: tuple[Account, ...] = ACCOUNTS) -> None:
        self.workdir = workdir
        self.accounts = {a.uid: a for a in accounts}
        self.port = free_port()
        self.ldaps_port = free_port()  # LDAPS, with a certificate of the test CA (`ca_file`)
        self.ca_file = tls.shared_ca().cert_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://localhost:{self.ldaps_port}"

    def start(self) -> Slapd:
        db = self.workdir / "db"
        if not db.exists():
            db.mkdir(parents=True)
            self._write_config()
            subprocess.run(["slapadd", "-f", str(self.conf), "-l", str(self._write_ldif())],
                           check=True, capture_output=True)
        with self.log.open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [SLAPD, "-f", str(self.conf), "-h",
                 f"{self.url}/ ldaps://127.0.0.1:{self.ldaps_port}/", "-d", "0"],
                stdout=subprocess.DEVNULL, stderr=log,
            )
        deadline = time.monotonic() + 15
        while not self._answers():
            if self.process.poll() is not None:
                raise AssertionError(f"slapd exited: {self.log.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                raise AssertionError("slapd did not answer in 15 s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def add_member(self, uid: str) -> None:
        self._modify_staff("add", uid)

    def remove_member(self, uid: str) -> None:
        self._modify_staff("delete", uid)

    # --- internals ----------------------------------------------------------------------------

    @property
    def conf(self) -> Path:
        return self.workdir / "slapd.conf"

    @property
    def log(self) -> Path:
        return self.workdir / "slapd.log"

    def _modify_staff(self, change: str, uid: str) -> None:
        ldif = f"dn: {STAFF_DN}\nchangetype: modify\n{change}: member\nmember: " \
               f"{self.accounts[uid].dn}\n"
        subprocess.run(["ldapmodify", "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PASSWORD],
                       input=ldif.encode(), check=True, capture_output=True, timeout=10)

    def _answers(self) -> bool:
        result = subprocess.run(
            ["ldapsearch", "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PASSWORD,
             "-b", SUFFIX, "-s", "base", "-o", "nettimeout=1"],
            capture_output=True, timeout=10,
        )
        return result.returncode == 0

    def _write_config(self) -> None:
        includes = "".join(f"include /etc/ldap/schema/{s}.schema\n" for s in SCHEMAS)
        cert, key = tls.issue(["localhost", "127.0.0.1"])
        key.chmod(0o600)
        self.conf.write_text(
            f"{includes}"
            f"TLSCACertificateFile {self.ca_file}\n"
            f"TLSCertificateFile {cert}\n"
            f"TLSCertificateKeyFile {key}\n"
            f"pidfile {self.workdir / 'slapd.pid'}\n"
            "modulepath /usr/lib/ldap\n"
            "moduleload back_mdb\n"
            "database mdb\n"
            f'suffix "{SUFFIX}"\n'
            f'rootdn "{ROOT_DN}"\n'
            f"rootpw {ROOT_PASSWORD}\n"
            f"directory {self.workdir / 'db'}\n"
            "maxsize 10485760\n"
            "access to attrs=userPassword by self write by anonymous auth by * none\n"
            "access to * by users read by * none\n"
        )

    def _write_ldif(self) -> Path:
        entries = [
            f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: clinic\n"
            "o: Clinic\n",
            f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n",
            f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n",
            f"dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n",
            f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject"
            f"\ncn: gatekeeper\nuserPassword: {SERVICE_PASSWORD}\n",
        ]
        for a in self.accounts.values():
            entries.append(
                f"dn: {a.dn}\nobjectClass: inetOrgPerson\nuid: {a.uid}\ncn: {a.name}\n"
                f"sn: {a.name.split()[-1]}\nmail: {a.mail}\nuserPassword: {a.password}\n"
            )
        members = "".join(f"member: {a.dn}\n" for a in self.accounts.values() if a.staff)
        entries.append(f"dn: {STAFF_DN}\nobjectClass: groupOfNames\ncn: staff\n{members}")
        path = self.workdir / "data.ldif"
        path.write_text("\n".join(entries))
        return path
