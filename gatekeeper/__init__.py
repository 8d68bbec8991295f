"""gatekeeper: enforce a social-media acceptable-use policy on the office gateway."""

__version__ = "0.1.0"
