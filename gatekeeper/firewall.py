"""The gateway's nftables table handed to `nft` (`gatekeeper firewall render|check|apply`).

The rules come from `gatekeeper.gateway.render_ruleset()` (pure); this module only runs `nft`.
`check` asks the kernel to validate the script without applying it (`nft -c`); `apply` loads it
in one transaction, so the gateway is never left with half a table.
"""

from __future__ import annotations

import shutil
import subprocess

from gatekeeper.gateway import GatewayConfig, render_ruleset

NFT_FALLBACK = "/usr/sbin/nft"  # Debian's nftables; /usr/sbin is not on every user's PATH
NFT_TIMEOUT_SECONDS = 30


class FirewallError(Exception):
    """`nft` refused the ruleset or could not run; the message is nft's own."""


def nft_binary() -> str:
    return shutil.which("nft") or NFT_FALLBACK


def run_nft(ruleset: str, *, check_only: bool) -> None:
    """Feed `ruleset` to `nft -f -` (with `-c`: validate only); raises `FirewallError`."""
    command = [nft_binary(), *(["-c"] if check_only else []), "-f", "-"]
    try:
        result = subprocess.run(
            command, input=ruleset, capture_output=True, text=True,
            timeout=NFT_TIMEOUT_SECONDS, check=False,
        )
    except FileNotFoundError as e:
        raise FirewallError(f"{command[0]} not found: install Debian's nftables package") from e
    except subprocess.TimeoutExpired as e:
        raise FirewallError(f"nft did not finish within {NFT_TIMEOUT_SECONDS} s") from e
    if result.returncode != 0:
        raise FirewallError(result.stderr.strip() or f"nft exited with {result.returncode}")


def check(cfg: GatewayConfig) -> str:
    """Render and validate against the running kernel without changing anything."""
    ruleset = render_ruleset(cfg)
    run_nft(ruleset, check_only=True)
    return ruleset


def apply(cfg: GatewayConfig) -> str:
    """Render and load atomically, replacing any earlier `inet gatekeeper` table."""
    ruleset = render_ruleset(cfg)
    run_nft(ruleset, check_only=False)
    return ruleset
