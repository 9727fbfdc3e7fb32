"""The consortium_lab JupyterHub deployment: settings, authenticators, spawners, services.

``hub/jupyterhub_config.py`` reads the ``CONSORTIUM_HUB_*`` variables
(:mod:`consortium_hub.settings`) and applies them (:mod:`consortium_hub.configure`).
"""
