"""Adversarial tests: each one is a trick a motivated employee would try, run through a real
proxy, asserting the safe outcome. One file per family: evasion, bodies, bombs, auth, faults,
pages. The fixtures of tests/conftest.py (`gk`, `fake_sites`, `config_dir`) apply here too."""
