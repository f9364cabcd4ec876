"""Beam pipeline options per runner and the SDK worker boot for external worker pools."""
