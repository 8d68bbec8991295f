"""mitmproxy entry script: `mitmdump -s addons/gatekeeper.py --set gatekeeper_config_dir=DIR`.

All the code lives in the `gatekeeper` package; this file only hands its addons to mitmproxy.
mitmproxy puts this script's folder first on sys.path while loading it, where this very file
would shadow the package of the same name, so that folder is taken out before the import.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from gatekeeper.addons import all_addons  # noqa: E402
from gatekeeper.addons.dispatch import Addons  # noqa: E402

addons = [Addons(all_addons())]  # one chain entry, as `gatekeeper serve` registers them
