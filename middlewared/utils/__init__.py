"""Small helpers shared by the daemon's plugins."""
