"""mitmproxy entry script: `mitmdump -s addons/gatekeeper.py --set gatekeeper_config_dir=DIR`.

All the code lives in the `gatekeeper` package; this file only hands its addons to mitmproxy.
"""

from gatekeeper.addons import all_addons

addons = all_addons()
