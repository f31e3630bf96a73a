"""Shared pytest configuration: fixtures live in plugins named for what they provide."""

pytest_plugins = ["controlplane.plugin", "helm.plugin", "emulators"]
