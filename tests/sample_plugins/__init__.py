"""Plugins written the way third parties write them, some of them broken on purpose."""
