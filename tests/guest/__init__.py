"""The e2e test guest: its image builder (build.py) and its init scripts (rootfs/)."""
