"""JupyterHub configuration of the consortium_lab deployment (see docs/hub.md).

Configured only by ``CONSORTIUM_HUB_*`` environment variables: every missing or malformed one
is reported in one message and the hub exits with status 2. Run it with
``jupyterhub -f hub/jupyterhub_config.py`` (or ``consortium-lab hub`` to try it).
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from consortium_hub.configure import configure
from consortium_hub.settings import SettingsError, read_settings

try:
    settings = read_settings(os.environ)
    configure(get_config(), settings)  # noqa: F821
except SettingsError as exc:
    print(exc, file=sys.stderr)
    sys.exit(2)
